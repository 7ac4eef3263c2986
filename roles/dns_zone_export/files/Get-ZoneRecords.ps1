# Read every record of one zone from the local Windows DNS Server (DnsServer module, Windows Server 2012+)
# and return them flattened: {name, type, ttl, data}. Read-only. The controller turns them into zone-file
# form (plugins/filter/dns_records.py) and writes the export there.
# Source: learn.microsoft.com/powershell/module/dnsserver/get-dnsserverresourcerecord
[CmdletBinding()]
param([Parameter(Mandatory = $true)][string]$ZoneName)
$ErrorActionPreference = 'Stop'
$Ansible.Changed = $false
$rows = foreach ($rr in Get-DnsServerResourceRecord -ZoneName $ZoneName) {
    $data = @{}
    foreach ($prop in $rr.RecordData.CimInstanceProperties) {
        $value = $prop.Value
        if ($value -is [TimeSpan]) { $value = [int]$value.TotalSeconds }
        elseif ($null -ne $value -and $value.GetType().Name -eq 'IPAddress') { $value = $value.IPAddressToString }
        $data[$prop.Name] = $value
    }
    [ordered]@{
        name = $rr.HostName
        type = $rr.RecordType
        ttl  = [int]$rr.TimeToLive.TotalSeconds
        data = $data
    }
}
$Ansible.Result = @{ records = @($rows) }

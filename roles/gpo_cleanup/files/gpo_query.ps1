# gpo_cleanup: is this a Windows domain controller; every GPO of the domain with its links and which
# setting patterns its settings match. Reads only. Output ($Ansible.Result) has the same shape as the
# samba_gpo module's query: is_dc, realm, gpos[guid, name, dn, links, setting_hits, files], link_index.
# Sources: Win32_ComputerSystem.DomainRole 4/5 = backup/primary DC (learn.microsoft.com/windows/win32/
# cimwin32prov/win32-computersystem); Get-GPO, Get-GPOReport (GroupPolicy module); gPLink syntax
# "[LDAP://<gpo dn>;<options>]" (learn.microsoft.com/openspecs/windows_protocols/ms-gpol, 2.2.2).
[CmdletBinding()]
param (
    [string[]]$SettingPatterns = @()
)
$ErrorActionPreference = 'Stop'
$Ansible.Changed = $false

$role = (Get-CimInstance -ClassName Win32_ComputerSystem).DomainRole
if ($role -lt 4) {
    $Ansible.Result = @{ is_dc = $false; reason = "Win32_ComputerSystem.DomainRole is $role"; gpos = @() }
    return
}
Import-Module GroupPolicy
Import-Module ActiveDirectory
$domain = Get-ADDomain
$rootDse = Get-ADRootDSE

# GUID -> containers linking it: the domain partition and the sites of the configuration partition.
$linkIndex = @{}
$bases = @($domain.DistinguishedName, "CN=Sites,$($rootDse.configurationNamingContext)")
foreach ($base in $bases) {
    foreach ($obj in Get-ADObject -SearchBase $base -SearchScope Subtree -LDAPFilter '(gPLink=*)' -Properties gPLink) {
        foreach ($m in [regex]::Matches([string]$obj.gPLink, '\[LDAP://cn=(\{[0-9a-fA-F-]{36}\}),[^;\]]*;\d+\]', 'IgnoreCase')) {
            $guid = $m.Groups[1].Value.ToUpperInvariant()
            if (-not $linkIndex.ContainsKey($guid)) { $linkIndex[$guid] = [System.Collections.Generic.List[string]]::new() }
            $linkIndex[$guid].Add([string]$obj.DistinguishedName)
        }
    }
}

$gpos = foreach ($gpo in Get-GPO -All -Domain $domain.DNSRoot) {
    $guid = "{$($gpo.Id.ToString().ToUpperInvariant())}"
    [xml]$report = Get-GPOReport -Guid $gpo.Id -ReportType Xml -Domain $domain.DNSRoot
    # Only the settings sections: the report's header also carries the GPO's name.
    $hits = foreach ($section in 'Computer', 'User') {
        $node = $report.GPO.$section
        if ($null -eq $node) { continue }
        $text = $node.OuterXml
        foreach ($pattern in $SettingPatterns) {
            if ([regex]::IsMatch($text, $pattern, 'IgnoreCase')) { @{ pattern = $pattern; file = "GPOReport.xml:$section" } }
        }
    }
    $links = if ($linkIndex.ContainsKey($guid)) { @($linkIndex[$guid] | Sort-Object) } else { @() }
    @{
        guid = $guid
        name = [string]$gpo.DisplayName
        dn = [string]$gpo.Path
        links = $links
        setting_hits = @($hits)
        files = @('GPOReport.xml:Computer', 'GPOReport.xml:User')
        attributes = @{
            GpoStatus = [string]$gpo.GpoStatus
            CreationTime = $gpo.CreationTime.ToString('o')
            ModificationTime = $gpo.ModificationTime.ToString('o')
            WmiFilter = [string]$gpo.WmiFilter.Name
        }
    }
}
$index = @{}
foreach ($key in $linkIndex.Keys) { $index[$key] = @($linkIndex[$key]) }
$Ansible.Result = @{
    is_dc = $true
    realm = [string]$domain.DNSRoot
    gpos = @($gpos | Sort-Object { $_.name })
    link_index = $index
    method = 'GroupPolicy module: Get-GPO -All, Get-GPOReport -ReportType Xml (Computer/User settings); gPLink of every domain and site object'
}

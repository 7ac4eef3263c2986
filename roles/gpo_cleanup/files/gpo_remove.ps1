# gpo_cleanup: remove every link of one GPO (Remove-GPLink) and delete it (Remove-GPO).
# Source: learn.microsoft.com/powershell/module/grouppolicy/remove-gplink and remove-gpo.
[CmdletBinding()]
param (
    [Parameter(Mandatory)][string]$Guid,
    [string[]]$Links = @()
)
$ErrorActionPreference = 'Stop'
Import-Module GroupPolicy
$id = [guid]$Guid.Trim('{}')
$unlinked = foreach ($target in $Links) {
    Remove-GPLink -Guid $id -Target $target | Out-Null
    $target
}
Remove-GPO -Guid $id
$Ansible.Changed = $true
$Ansible.Result = @{ unlinked = @($unlinked); deleted = $true }

# gpo_cleanup: Backup-GPO of one GPO plus its XML report and links, zipped below $BackupDir; returns the
# archive's path and sha256. Reads the GPO only (the backup folder is the one thing written).
# Source: Backup-GPO, Get-GPOReport (learn.microsoft.com/powershell/module/grouppolicy).
[CmdletBinding()]
param (
    [Parameter(Mandatory)][string]$Guid,
    [Parameter(Mandatory)][string]$BackupDir,
    [string[]]$Links = @()
)
$ErrorActionPreference = 'Stop'
$Ansible.Changed = $false
Import-Module GroupPolicy
$id = [guid]$Guid.Trim('{}')
New-Item -ItemType Directory -Force -Path $BackupDir | Out-Null
$work = Join-Path $BackupDir ([guid]::NewGuid().ToString())
New-Item -ItemType Directory -Path $work | Out-Null
try {
    Backup-GPO -Guid $id -Path $work -Comment 'offboard gpo_cleanup: before deletion' | Out-Null
    Get-GPOReport -Guid $id -ReportType Xml -Path (Join-Path $work 'GPOReport.xml')
    $Links | Set-Content -Path (Join-Path $work 'links.txt') -Encoding UTF8
    $zip = Join-Path $BackupDir "{$($id.ToString().ToUpperInvariant())}.zip"
    Compress-Archive -Path (Join-Path $work '*') -DestinationPath $zip -Force
}
finally {
    Remove-Item -LiteralPath $work -Recurse -Force -ErrorAction SilentlyContinue
}
$Ansible.Result = @{ archive = $zip; sha256 = (Get-FileHash -LiteralPath $zip -Algorithm SHA256).Hash.ToLowerInvariant() }

# Finds (and with -Remove removes) what the departing MSP left running silently on a Windows host:
# scheduled tasks (by name/path, author, action), Run-key and Startup-folder entries, local Group Policy
# startup/logon scripts (scripts.ini), services whose name or binary matches, and the MSP's script folders.
# Each item carries its definition (task XML, registry value, file text, service configuration) so that the
# evidence can restore it. Run by ansible.windows.win_powershell; NOT run on a Windows host here.
[CmdletBinding()]
param (
    [string[]] $NamePatterns = @(),
    [string[]] $PathPatterns = @(),
    [string[]] $Authors = @(),
    [string[]] $ScriptDirs = @(),
    [string[]] $KeepPatterns = @(),
    [int] $CaptureLimit = 16384,
    [switch] $Remove
)
$ErrorActionPreference = 'Stop'

Function Test-Any {
    param ([string[]] $Patterns, [string[]] $Texts)
    foreach ($pattern in $Patterns) {
        foreach ($text in $Texts) {
            if ($text -and [regex]::IsMatch($text, $pattern, 'IgnoreCase')) { return $pattern }
        }
    }
    return $null
}

Function New-FoundItem {
    param ([string] $Kind, [string] $Component, [string] $Id, [string] $Path, [string] $Definition, [string] $MatchedBy,
        [hashtable] $Extra = @{})
    $bytes = [System.Text.Encoding]::UTF8.GetBytes([string]$Definition)
    $sha = [System.Security.Cryptography.SHA256]::Create()
    $hash = -join ($sha.ComputeHash($bytes) | ForEach-Object { $_.ToString('x2') })
    $text = if ($bytes.Length -gt $CaptureLimit) {
        [System.Text.Encoding]::UTF8.GetString($bytes, 0, $CaptureLimit)
    } else { [string]$Definition }
    $item = @{
        id = $Id; kind = $Kind; component = $Component; path = $Path; definition = $text
        definition_sha256 = $hash; definition_bytes = $bytes.Length; truncated = ($bytes.Length -gt $CaptureLimit)
        matched_by = $MatchedBy
    }
    foreach ($key in $Extra.Keys) { $item[$key] = $Extra[$key] }
    return $item
}

$items = [System.Collections.Generic.List[object]]::new()
$kept = [System.Collections.Generic.List[object]]::new()
Function Add-Found {
    param ([hashtable] $Item, [string[]] $Texts)
    $keep = Test-Any -Patterns $KeepPatterns -Texts $Texts
    if ($keep) {
        $kept.Add(@{ id = $Item.id; kind = $Item.kind; path = $Item.path; kept_by = "keep_patterns: $keep"; matched_by = $Item.matched_by })
    } else {
        $items.Add($Item)
    }
}

# Scheduled tasks: by name or folder, author, or what the action runs.
foreach ($task in @(Get-ScheduledTask -ErrorAction SilentlyContinue)) {
    $full = "$($task.TaskPath)$($task.TaskName)"
    $actions = @($task.Actions | ForEach-Object { "$($_.Execute) $($_.Arguments) $($_.WorkingDirectory)" }) -join "`n"
    $author = [string]$task.Author
    $why = $null
    $hit = Test-Any -Patterns $NamePatterns -Texts @($full)
    if ($hit) { $why = "name_patterns: $hit" }
    if (-not $why -and $author -and ($Authors | Where-Object { $_ -ieq $author })) { $why = "authors: $author" }
    if (-not $why) { $hit = Test-Any -Patterns $PathPatterns -Texts @($actions); if ($hit) { $why = "path_patterns: $hit" } }
    if ($why) {
        $xml = Export-ScheduledTask -TaskName $task.TaskName -TaskPath $task.TaskPath
        Add-Found -Item (New-FoundItem -Kind 'scheduled_task' -Component 'scheduled_task' -Id "task:$full" -Path $full `
                -Definition $xml -MatchedBy $why -Extra @{ task_name = $task.TaskName; task_path = $task.TaskPath; author = $author }) `
            -Texts @($full, $actions, $author)
    }
}

# Run keys (machine-wide, both views): value name or command line.
foreach ($key in @('HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Run', 'HKLM:\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Run',
        'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\RunOnce')) {
    if (-not (Test-Path -LiteralPath $key)) { continue }
    $props = Get-ItemProperty -LiteralPath $key
    foreach ($p in @($props.PSObject.Properties | Where-Object { $_.Name -notlike 'PS*' })) {
        $hit = Test-Any -Patterns $NamePatterns -Texts @($p.Name)
        $why = if ($hit) { "name_patterns: $hit" } else { $h2 = Test-Any -Patterns $PathPatterns -Texts @([string]$p.Value); if ($h2) { "path_patterns: $h2" } }
        if ($why) {
            Add-Found -Item (New-FoundItem -Kind 'run_key' -Component 'startup_script' -Id "run_key:$key\$($p.Name)" -Path $key `
                    -Definition "$($p.Name) = $($p.Value)" -MatchedBy $why -Extra @{ value_name = $p.Name }) -Texts @($p.Name, [string]$p.Value)
        }
    }
}

# All-users Startup folder.
$startup = Join-Path $env:ProgramData 'Microsoft\Windows\Start Menu\Programs\StartUp'
foreach ($file in @(Get-ChildItem -LiteralPath $startup -File -ErrorAction SilentlyContinue)) {
    $text = if ($file.Extension -in '.lnk', '.url') { '(shortcut) ' + $file.FullName } else { Get-Content -LiteralPath $file.FullName -Raw }
    $hit = Test-Any -Patterns $NamePatterns -Texts @($file.Name)
    $why = if ($hit) { "name_patterns: $hit" } else { $h2 = Test-Any -Patterns $PathPatterns -Texts @($text); if ($h2) { "path_patterns: $h2" } }
    if ($why) {
        Add-Found -Item (New-FoundItem -Kind 'startup_file' -Component 'startup_script' -Id "startup_file:$($file.FullName)" -Path $file.FullName `
                -Definition $text -MatchedBy $why) -Texts @($file.Name, $text)
    }
}

# Local Group Policy startup/shutdown/logon/logoff scripts (scripts.ini): the whole file is the definition.
foreach ($ini in @("$env:SystemRoot\System32\GroupPolicy\Machine\Scripts\scripts.ini", "$env:SystemRoot\System32\GroupPolicy\User\Scripts\scripts.ini")) {
    if (-not (Test-Path -LiteralPath $ini)) { continue }
    $text = Get-Content -LiteralPath $ini -Raw
    $hit = Test-Any -Patterns $PathPatterns -Texts @($text)
    if ($hit) {
        Add-Found -Item (New-FoundItem -Kind 'gpo_script_ini' -Component 'startup_script' -Id "gpo_script_ini:$ini" -Path $ini `
                -Definition $text -MatchedBy "path_patterns: $hit" -Extra @{ patterns = $PathPatterns }) -Texts @($text)
    }
}

# Services the MSP installed: by name or by binary path.
foreach ($svc in @(Get-CimInstance -ClassName Win32_Service)) {
    $hit = Test-Any -Patterns $NamePatterns -Texts @($svc.Name)
    $why = if ($hit) { "name_patterns: $hit" } else { $h2 = Test-Any -Patterns $PathPatterns -Texts @([string]$svc.PathName); if ($h2) { "path_patterns: $h2" } }
    if ($why) {
        $def = "Name=$($svc.Name)`nDisplayName=$($svc.DisplayName)`nPathName=$($svc.PathName)`nStartMode=$($svc.StartMode)`nStartName=$($svc.StartName)"
        Add-Found -Item (New-FoundItem -Kind 'service' -Component 'scheduled_task' -Id "service:$($svc.Name)" -Path ([string]$svc.PathName) `
                -Definition $def -MatchedBy $why -Extra @{ service_name = $svc.Name }) -Texts @($svc.Name, [string]$svc.PathName)
    }
}

# The MSP's script folders: listing with hashes, then the text of each small text file.
foreach ($dir in $ScriptDirs) {
    if (-not (Test-Path -LiteralPath $dir -PathType Container)) { continue }
    if ($dir -match '^[A-Za-z]:\\?$' -or $dir -match '^[A-Za-z]:\\(Windows|Program Files|Program Files \(x86\)|ProgramData|Users)\\?$') {
        throw "refusing script folder '$dir': a system folder; fix offboard_msp_footprint.script_dirs"
    }
    $lines = foreach ($f in @(Get-ChildItem -LiteralPath $dir -File -Recurse)) {
        "$((Get-FileHash -LiteralPath $f.FullName -Algorithm SHA256).Hash.ToLower())  $($f.Length)  $($f.FullName)"
    }
    $texts = foreach ($f in @(Get-ChildItem -LiteralPath $dir -File -Recurse | Where-Object { $_.Extension -in '.ps1', '.bat', '.cmd', '.vbs', '.txt', '.ini' })) {
        "--- $($f.FullName)`n$(Get-Content -LiteralPath $f.FullName -Raw)"
    }
    Add-Found -Item (New-FoundItem -Kind 'script_dir' -Component 'startup_script' -Id "script_dir:$dir" -Path $dir `
            -Definition ((@($lines) -join "`n") + "`n`n" + (@($texts) -join "`n")) -MatchedBy 'script_dirs') -Texts @($dir)
}

if ($Remove) {
    foreach ($item in $items) {
        switch ($item.kind) {
            'scheduled_task' { Unregister-ScheduledTask -TaskName $item.task_name -TaskPath $item.task_path -Confirm:$false }
            'run_key' { Remove-ItemProperty -LiteralPath $item.path -Name $item.value_name }
            'startup_file' { Remove-Item -LiteralPath $item.path -Force }
            'gpo_script_ini' {
                # Drop the numbered CmdLine/Parameters pairs whose command matches and renumber the rest of
                # each section from 0 (Group Policy stops at the first gap); everything else stays.
                $lines = @(Get-Content -LiteralPath $item.path)
                $drop = @{}
                $section = ''
                foreach ($line in $lines) {
                    if ($line -match '^\s*\[(.+)\]\s*$') { $section = $Matches[1]; continue }
                    if ($line -match '^(\d+)CmdLine=(.*)$' -and (Test-Any -Patterns $PathPatterns -Texts @($Matches[2]))) {
                        $drop["$section|$($Matches[1])"] = $true
                    }
                }
                $out = [System.Collections.Generic.List[string]]::new()
                $section = ''
                $map = @{}
                $next = 0
                foreach ($line in $lines) {
                    if ($line -match '^\s*\[(.+)\]\s*$') { $section = $Matches[1]; $map = @{}; $next = 0; $out.Add($line); continue }
                    if ($line -match '^(\d+)(CmdLine|Parameters)=(.*)$') {
                        $index = $Matches[1]; $field = $Matches[2]; $value = $Matches[3]
                        if ($drop.ContainsKey("$section|$index")) { continue }
                        if (-not $map.ContainsKey($index)) { $map[$index] = $next; $next++ }
                        $out.Add("$($map[$index])$field=$value")
                        continue
                    }
                    $out.Add($line)
                }
                Set-Content -LiteralPath $item.path -Value $out -Encoding Unicode
            }
            'service' {
                Stop-Service -Name $item.service_name -Force -ErrorAction SilentlyContinue
                $null = & sc.exe delete $item.service_name
            }
            'script_dir' { Remove-Item -LiteralPath $item.path -Recurse -Force }
        }
    }
}

$Ansible.Changed = [bool]($Remove -and $items.Count -gt 0)
$Ansible.Result = @{ items = @($items); kept = @($kept) }

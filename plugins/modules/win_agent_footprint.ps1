#!powershell
# Copyright: the offboard project contributors
# Apache-2.0
# Documentation: win_agent_footprint.py next to this file. Contract: shared with agent_footprint.py
# (one result per item: found, footprint, refused; with state=absent also removal).

#AnsibleRequires -CSharpUtil Ansible.Basic

$spec = @{
    options = @{
        items = @{ type = 'list'; elements = 'dict'; required = $true }
        state = @{ type = 'str'; choices = @('query', 'absent'); default = 'query' }
        timeout = @{ type = 'int'; default = 300 }
        secrets = @{ type = 'dict'; default = @{}; no_log = $true }
        remove_leftovers = @{ type = 'bool'; default = $true }
    }
    supports_check_mode = $true
}
$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
$checkMode = $module.CheckMode
$ErrorActionPreference = 'Stop'

# ---------------------------------------------------------------------------------------------------
# Safety: a catalog typo, a derived path or a fact the scope filter flattened must never delete a system
# folder, a whole profile or a shared registry container. A target is refused when it IS, or CONTAINS,
# one of $protectedPaths / $protectedRegistry, or lies anywhere below one of $protectedTrees.
$systemDrive = if ($env:SystemDrive) { $env:SystemDrive } else { 'C:' }
$systemRoot = if ($env:SystemRoot) { $env:SystemRoot } else { 'C:\Windows' }
$protectedPaths = [System.Collections.Generic.List[string]]@(
    "$systemDrive\", $systemRoot, "$systemRoot\Temp",
    "$systemRoot\System32\config\systemprofile\AppData\Local",
    "$systemRoot\System32\config\systemprofile\AppData\Roaming",
    "$systemRoot\SysWOW64\config\systemprofile\AppData\Local",
    "$systemRoot\SysWOW64\config\systemprofile\AppData\Roaming",
    'C:\Program Files', 'C:\Program Files (x86)', 'C:\ProgramData', 'C:\Users',
    'C:\Program Files\Common Files', 'C:\Program Files (x86)\Common Files',
    'C:\ProgramData\Microsoft', 'C:\ProgramData\Microsoft\Windows\Start Menu\Programs\Startup',
    'C:\ProgramData\Microsoft\Windows\Start Menu\Programs',
    'C:\Users\Public', 'C:\Users\Public\Documents', 'C:\Users\Public\Desktop', 'C:\Users\Default',
    'C:\Program Files\WindowsApps', 'C:\Program Files\Windows Defender', 'C:\ProgramData\Microsoft\Windows Defender'
)
foreach ($name in @('ProgramFiles', 'ProgramFiles(x86)', 'ProgramW6432', 'ProgramData', 'PUBLIC', 'ALLUSERSPROFILE')) {
    $value = [Environment]::GetEnvironmentVariable($name)
    if ($value) { $protectedPaths.Add($value) }
}
# Whole subtrees of the operating system: nothing below them is an agent's to delete, except the vendor
# folders of the LocalSystem profile (...\config\systemprofile\AppData\Local\<vendor>), allowed below.
$protectedTrees = [System.Collections.Generic.List[string]]@()
foreach ($leaf in @(
        'System32', 'SysWOW64', 'SysNative', 'WinSxS', 'Installer', 'servicing', 'assembly', 'Microsoft.NET',
        'Boot', 'Fonts', 'INF', 'SystemApps', 'Tasks', 'Prefetch', 'SoftwareDistribution', 'Panther', 'security',
        'ServiceProfiles', 'PolicyDefinitions', 'Registration', 'Logs', 'System', 'SystemResources')) {
    $protectedTrees.Add("$systemRoot\$leaf")
}
$systemProfileVendor = '^(?i)' + [regex]::Escape($systemRoot) +
    '\\(System32|SysWOW64)\\config\\systemprofile\\AppData\\(Local|Roaming)\\[^\\]+'

$protectedRegistry = [System.Collections.Generic.List[string]]@(
    'HKLM:\SOFTWARE\Classes\Installer\Products', 'HKLM:\SOFTWARE\Policies\Microsoft',
    'HKLM:\SOFTWARE\Microsoft\Cryptography', 'HKLM:\SOFTWARE\Microsoft\Windows Defender',
    'HKCR:\Installer\Products',
    'HKCR:\CLSID', 'HKCR:\Interface', 'HKCR:\TypeLib', 'HKCR:\AppID', 'HKCR:\exefile', 'HKCR:\.exe',
    'HKCR:\Directory', 'HKCR:\Folder', 'HKCR:\http', 'HKCR:\https', 'HKCR:\*',
    'HKU:\.DEFAULT\Software\Microsoft',
    'HKCU:\Software\Microsoft', 'HKCU:\Software\Classes', 'HKCU:\Software\Policies',
    'HKCC:\System'
)
foreach ($software in @('HKLM:\SOFTWARE', 'HKLM:\SOFTWARE\WOW6432Node')) {
    foreach ($leaf in @(
            'Microsoft\Windows\CurrentVersion\Run', 'Microsoft\Windows\CurrentVersion\RunOnce',
            'Microsoft\Windows\CurrentVersion\Uninstall',
            'Microsoft\Windows\CurrentVersion\Installer\UserData\S-1-5-18\Products',
            'Microsoft\Windows\Windows Error Reporting\LocalDumps',
            'Microsoft\Windows NT\CurrentVersion\Winlogon', 'Classes\CLSID', 'Policies')) {
        $protectedRegistry.Add("$software\$leaf")
    }
}
foreach ($controlSet in @('CurrentControlSet', 'ControlSet001', 'ControlSet002')) {
    foreach ($leaf in @(
            'Services\EventLog\Application', 'Services\EventLog\System', 'Services\Tcpip', 'Services\LanmanServer',
            'Control\SafeBoot\Network', 'Control\SafeBoot\Minimal', 'Control\Session Manager', 'Enum')) {
        $protectedRegistry.Add("HKLM:\SYSTEM\$controlSet\$leaf")
    }
}
# Whole subtrees that no agent owns any part of.
$protectedRegistryTrees = @('HKLM:\SAM', 'HKLM:\SECURITY', 'HKLM:\HARDWARE', 'HKLM:\BCD00000000', 'HKLM:\SYSTEM\Setup')
# Per-user hives: the hive, its Software key and its Microsoft/Classes/Policies containers.
$protectedUserKey = '^(?i)HKU:\\[^\\]+(\\Software(\\(Microsoft|Classes|Policies))?)?\\?$'
$hives = @{
    'HKLM' = 'HKEY_LOCAL_MACHINE'; 'HKCU' = 'HKEY_CURRENT_USER'; 'HKCR' = 'HKEY_CLASSES_ROOT'
    'HKU' = 'HKEY_USERS'; 'HKCC' = 'HKEY_CURRENT_CONFIG'
}

Function Test-Within {
    # True when $Path is $Root or lies below it (case-insensitive, backslash separated).
    param ([string]$Path, [string]$Root)
    if (-not $Path -or -not $Root) { return $false }
    $p = $Path.TrimEnd('\')
    $r = $Root.TrimEnd('\')
    return ($p -eq $r) -or $p.StartsWith("$r\", [StringComparison]::OrdinalIgnoreCase)
}

Function Test-SafePath {
    # Absolute drive path, no wildcard, no '..', normalised, two levels deep at least, not a system folder,
    # not a parent of one, not inside an operating-system subtree, not a whole user profile.
    param ([string]$Path)
    if (-not $Path -or $Path -notmatch '^[A-Za-z]:\\[^\\]+\\[^\\]' -or $Path.IndexOfAny([char[]]'*?<>|"') -ge 0) {
        return $false
    }
    if ($Path -match '(^|\\)\.\.?(\\|$)' -or $Path -match '\\\\') { return $false }
    # A whole profile (C:\Users\<name>) and its standard folders are never an agent's leftover.
    if ($Path -match '^(?i)[A-Za-z]:\\Users\\[^\\]+(\\(AppData(\\(Local|Roaming|LocalLow))?|Desktop|Documents|Downloads))?\\?$') {
        return $false
    }
    foreach ($protected in $protectedPaths) {
        if (Test-Within -Path $protected -Root $Path) { return $false }
    }
    if ($Path -notmatch $systemProfileVendor) {
        foreach ($tree in $protectedTrees) {
            if (Test-Within -Path $Path -Root $tree) { return $false }
        }
    }
    return $true
}

Function Test-SafeKey {
    # A key below a hive, two levels deep at least, not a shared container (nor one of its parents).
    param ([string]$Key)
    # HKCR:\<ProgID> is one level deep (Datto's cag: URL handler); everywhere else two levels at least.
    $depth = if ($Key -match '^HKCR:') { '^HKCR:\\[^\\*]' } else { '^(HKLM|HKCU|HKU|HKCC):\\[^\\]+\\[^\\]' }
    if (-not $Key -or $Key -notmatch $depth -or $Key.IndexOfAny([char[]]'*?') -ge 0 -or $Key -match '\\\\') {
        return $false
    }
    if ($Key -match $protectedUserKey) { return $false }
    foreach ($tree in $protectedRegistryTrees) {
        if (Test-Within -Path $Key -Root $tree) { return $false }
    }
    foreach ($protected in $protectedRegistry) {
        if (Test-Within -Path $protected -Root $Key) { return $false }
    }
    return $true
}

Function ConvertTo-ProviderPath {
    # 'HKLM:\SOFTWARE\X' -> 'Registry::HKEY_LOCAL_MACHINE\SOFTWARE\X' (HKCR: and HKU: drives do not exist
    # by default, and provider paths need no drive at all).
    param ([string]$Key)
    $hive, $rest = $Key -split ':\\', 2
    return "Registry::$($hives[$hive.ToUpperInvariant()])\$rest"
}

# ---------------------------------------------------------------------------------------------------
# Reading the item dicts: lists may arrive as object[] or ArrayList, facts as strings or dicts.
Function Get-Field {
    param ($Item, [string]$Name)
    if ($Item -is [System.Collections.IDictionary] -and $Item.ContainsKey($Name)) { return $Item[$Name] }
    return $null
}

Function Get-List {
    # Writes the elements of a list (nothing for $null); call it as @(Get-List $x).
    param ($Value)
    if ($null -eq $Value) { return }
    if ($Value -is [string] -or $Value -is [System.Collections.IDictionary]) { return $Value }
    foreach ($element in $Value) { $element }
}

Function Get-FactText {
    # A fact reduced to its identifying field: 'X' or @{name = 'X'; display_name = ...} -> 'X'.
    param ($Fact, [string]$Field)
    if ($Fact -is [System.Collections.IDictionary]) { return [string]$Fact[$Field] }
    return [string]$Fact
}

Function Expand-InstallDir {
    # '{install_dir}\x.exe' -> 'D:\Ninja\x.exe'; $null when the install folder is unknown on this host.
    param ([string]$Value, [string]$InstallDir)
    if (-not $Value -or -not $Value.Contains('{install_dir}')) { return $Value }
    if (-not $InstallDir) { return $null }
    return $Value.Replace('{install_dir}', $InstallDir)
}

Function Expand-Command {
    # An argv list with {install_dir} resolved ({secret} stays a placeholder); $null when any part needs an
    # unknown install folder.
    param ($Command, [string]$InstallDir)
    $argv = [System.Collections.Generic.List[string]]@()
    foreach ($arg in @(Get-List $Command)) {
        $expanded = Expand-InstallDir -Value ([string]$arg) -InstallDir $InstallDir
        if ($null -eq $expanded) { return $null }
        $argv.Add($expanded)
    }
    if ($argv.Count -eq 0) { return $null }
    return , $argv.ToArray()
}

Function Test-NeedsSecret {
    param ($Argv)
    return [bool](@(Get-List $Argv) | Where-Object { ([string]$_).Contains('{secret}') })
}

Function Get-ImageFile {
    # The program file of a service ImagePath or a command line: quoted first token, or up to .exe/.sys/.dll.
    param ([string]$ImagePath)
    if (-not $ImagePath) { return $null }
    $image = [Environment]::ExpandEnvironmentVariables($ImagePath.Trim()) -replace '^\\\?\?\\', ''
    if ($image.StartsWith('"')) { $image = $image.Substring(1).Split('"')[0] }
    elseif ($image -match '^(.+?\.(exe|sys|dll|com|bat|cmd))(\s|$)') { $image = $Matches[1] }
    if ($image -match '^(?i)\\SystemRoot\\') { $image = Join-Path -Path $systemRoot -ChildPath $image.Substring(12) }
    elseif ($image -match '^(?i)System32\\') { $image = Join-Path -Path $systemRoot -ChildPath $image }
    return $image
}

Function Find-ReferencedRoot {
    # The first vendor folder that $Text names as a path (a command line, an ImagePath, a Run value, an
    # uninstall string), or $null. A root matches only as a whole path component: C:\Vendor never matches
    # C:\VendorTools.
    param ([string]$Text, $Roots)
    if (-not $Text) { return $null }
    $expanded = [Environment]::ExpandEnvironmentVariables($Text) -replace '\\\?\?\\', ''
    foreach ($root in $Roots) {
        $pattern = '(?i)(^|[\s"''=,;(])' + [regex]::Escape($root.TrimEnd('\')) + '(\\|"|''|\s|,|;|\)|$)'
        if ($expanded -match $pattern) { return $root }
    }
    return $null
}

# ---------------------------------------------------------------------------------------------------
# Host-wide snapshots, taken once per discovery round (then again after each removal layer).
Function Get-ServiceList {
    $list = [System.Collections.Generic.List[object]]@()
    $services = @(Get-CimInstance -ClassName Win32_Service -Property 'Name', 'DisplayName', 'PathName', 'StartMode', 'State', 'ProcessId')
    $drivers = @(Get-CimInstance -ClassName Win32_SystemDriver -Property 'Name', 'DisplayName', 'PathName', 'StartMode', 'State')
    foreach ($svc in @($services) + @($drivers)) {
        $startMode = [string]$svc.StartMode
        $list.Add(@{
                name = [string]$svc.Name
                display_name = [string]$svc.DisplayName
                state = [string]$svc.State
                start_mode = $startMode
                enabled = $startMode -notin @('Disabled', '')
                image_path = [string]$svc.PathName
                image_file = Get-ImageFile -ImagePath ([string]$svc.PathName)
                pid = if ($svc.ProcessId) { [int]$svc.ProcessId } else { 0 }
            })
    }
    return , $list.ToArray()
}

Function Get-ProcessList {
    return , @(Get-CimInstance -ClassName Win32_Process -Property 'ProcessId', 'ParentProcessId', 'Name', 'ExecutablePath', 'CommandLine' |
            Where-Object { $_.ProcessId -ne $PID -and $_.ProcessId -gt 4 })
}

Function Get-UninstallEntryList {
    # Add/Remove Programs entries of the machine, 64-bit and 32-bit views.
    $entries = [System.Collections.Generic.List[object]]@()
    $roots = @(
        @{ key = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall'; view = '64' },
        @{ key = 'HKLM:\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall'; view = '32' }
    )
    foreach ($root in $roots) {
        $children = @(Get-ChildItem -LiteralPath (ConvertTo-ProviderPath $root.key) -ErrorAction SilentlyContinue)
        foreach ($child in $children) {
            $props = $null
            try { $props = Get-ItemProperty -LiteralPath $child.PSPath -ErrorAction Stop } catch { continue }
            if (-not $props.DisplayName) { continue }
            $keyName = $child.PSChildName
            $isMsi = ($props.WindowsInstaller -eq 1) -and
                ($keyName -match '^\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}$')
            $entries.Add(@{
                    display_name = [string]$props.DisplayName
                    display_version = [string]$props.DisplayVersion
                    publisher = [string]$props.Publisher
                    key = "$($root.key)\$keyName"
                    view = $root.view
                    windows_installer = [bool]$isMsi
                    product_code = if ($isMsi) { $keyName.ToUpperInvariant() } else { $null }
                    uninstall_string = [string]$props.UninstallString
                    quiet_uninstall_string = [string]$props.QuietUninstallString
                    install_location = [string]$props.InstallLocation
                    display_icon = [string]$props.DisplayIcon
                })
        }
    }
    return , $entries.ToArray()
}

Function Get-ScheduledTaskList {
    # Every scheduled task (hidden ones too) with the text of its program actions: program, arguments and
    # working directory. The Schedule.Service COM API works on every Windows the module supports.
    $list = [System.Collections.Generic.List[object]]@()
    try {
        $scheduler = New-Object -ComObject 'Schedule.Service'
        $scheduler.Connect()
        $folders = [System.Collections.Generic.Stack[object]]::new()
        $folders.Push($scheduler.GetFolder('\'))
    }
    catch { return , $list.ToArray() }
    while ($folders.Count -gt 0) {
        $folder = $folders.Pop()
        try { foreach ($sub in @($folder.GetFolders(0))) { $folders.Push($sub) } } catch { $null = $_ }
        $tasks = @()
        try { $tasks = @($folder.GetTasks(1)) } catch { continue }  # 1: TASK_ENUM_HIDDEN
        foreach ($task in $tasks) {
            $actions = [System.Collections.Generic.List[string]]@()
            try {
                foreach ($action in @($task.Definition.Actions)) {
                    if ($action.Type -eq 0) {  # TASK_ACTION_EXEC
                        $actions.Add((@([string]$action.Path, [string]$action.Arguments, [string]$action.WorkingDirectory) -join ' ').Trim())
                    }
                }
            }
            catch { continue }
            $list.Add(@{ path = [string]$task.Path; name = [string]$task.Name; folder = [string]$folder.Path; actions = $actions.ToArray() })
        }
    }
    return , $list.ToArray()
}

Function Get-RunValueList {
    # Run and RunOnce values of the machine (both views) and of every loaded user hive.
    $list = [System.Collections.Generic.List[object]]@()
    $keys = [System.Collections.Generic.List[string]]@()
    foreach ($software in @('HKLM:\SOFTWARE', 'HKLM:\SOFTWARE\WOW6432Node')) {
        $keys.Add("$software\Microsoft\Windows\CurrentVersion\Run")
        $keys.Add("$software\Microsoft\Windows\CurrentVersion\RunOnce")
    }
    foreach ($hive in @(Get-ChildItem -LiteralPath 'Registry::HKEY_USERS' -ErrorAction SilentlyContinue)) {
        if ($hive.PSChildName -match '_Classes$') { continue }
        $keys.Add("HKU:\$($hive.PSChildName)\Software\Microsoft\Windows\CurrentVersion\Run")
        $keys.Add("HKU:\$($hive.PSChildName)\Software\Microsoft\Windows\CurrentVersion\RunOnce")
    }
    foreach ($key in $keys) {
        $item = Get-Item -LiteralPath (ConvertTo-ProviderPath $key) -ErrorAction SilentlyContinue
        if (-not $item) { continue }
        foreach ($valueName in $item.GetValueNames()) {
            if (-not $valueName) { continue }
            $list.Add(@{ key = $key; value = $valueName; data = [string]$item.GetValue($valueName) })
        }
    }
    return , $list.ToArray()
}

Function Get-HostSnapshot {
    return @{
        services = Get-ServiceList
        processes = Get-ProcessList
        entries = Get-UninstallEntryList
        tasks = Get-ScheduledTaskList
        runs = Get-RunValueList
    }
}

# ---------------------------------------------------------------------------------------------------
Function Test-DisplayName {
    param ([string]$DisplayName, $Rule)
    $wanted = Get-FactText -Fact $Rule -Field 'display_name'
    $match = Get-Field -Item $Rule -Name 'match'
    if (-not $match) { $match = 'exact' }
    switch ($match) {
        'exact' { return $DisplayName -eq $wanted }
        'prefix' { return $DisplayName.StartsWith($wanted, [StringComparison]::OrdinalIgnoreCase) }
        'regex' {
            try {
                return [regex]::IsMatch($DisplayName, $wanted, [Text.RegularExpressions.RegexOptions]::IgnoreCase)
            }
            catch { return $false }
        }
    }
    return $false
}

Function Get-RegistryTarget {
    # A registry fact: 'HKLM:\X' or @{key = 'HKLM:\X'; value = 'Name'} (delete one value, keep the key).
    param ($Fact)
    $key = Get-FactText -Fact $Fact -Field 'key'
    $value = Get-Field -Item $Fact -Name 'value'
    return @{ key = $key; value = if ($value) { [string]$value } else { $null } }
}

Function Test-RegistryTarget {
    param ($Target)
    $providerPath = ConvertTo-ProviderPath $Target.key
    if (-not (Test-Path -LiteralPath $providerPath)) { return $false }
    if (-not $Target.value) { return $true }
    return (Get-Item -LiteralPath $providerPath).GetValueNames() -contains $Target.value
}

Function Get-ItemScope {
    # The item's catalog facts resolved on this host, once: install folder, vendor folders ("roots": what
    # derived items must point into), the paths to delete, the uninstaller and protection plans.
    param ($Item, $Snapshot)
    $refused = [System.Collections.Generic.List[string]]@()
    $instance = [string](Get-Field -Item $Item -Name 'instance')
    $leftovers = Get-Field -Item $Item -Name 'leftovers'

    $installDir = $null
    $installDirSource = $null
    $installDirFrom = Get-Field -Item $Item -Name 'install_dir_from'
    if ($installDirFrom) {
        $fromKey = [string](Get-Field -Item $installDirFrom -Name 'key')
        $fromValue = [string](Get-Field -Item $installDirFrom -Name 'value')
        try {
            $raw = (Get-ItemProperty -LiteralPath (ConvertTo-ProviderPath $fromKey) -ErrorAction Stop).$fromValue
            if ($raw) {
                $installDir = ([string]$raw).Trim().Trim('"').Replace('/', '\').TrimEnd('\')
                $installDirSource = "$fromKey [$fromValue]"
            }
        }
        catch { $null = $_ }
        if (-not $installDir) {
            # The vendors' own removal scripts fall back to the folder of the agent service's program.
            foreach ($fact in @(Get-List (Get-Field -Item $Item -Name 'services'))) {
                $name = Get-FactText -Fact $fact -Field 'name'
                $svc = $Snapshot.services | Where-Object { $_.name -eq $name } | Select-Object -First 1
                if ($svc -and $svc.image_file) {
                    $installDir = [IO.Path]::GetDirectoryName($svc.image_file)
                    $installDirSource = "ImagePath of service $($svc.name)"
                    break
                }
            }
        }
        if ($installDir -and -not (Test-SafePath $installDir)) {
            $refused.Add("install_dir $installDir (a protected folder)")
            $installDir = $null
            $installDirSource = $null
        }
    }

    # Catalog paths: deleted when they exist; all of them (existing or not) are roots for derivation.
    $paths = [System.Collections.Generic.List[string]]@()
    $roots = [System.Collections.Generic.List[string]]@()
    $facts = @(Get-List (Get-Field -Item $Item -Name 'paths')) + @(Get-List (Get-Field -Item $leftovers -Name 'paths'))
    foreach ($fact in $facts) {
        $path = Expand-InstallDir -Value (Get-FactText -Fact $fact -Field 'path') -InstallDir $installDir
        if (-not $path) { continue }
        $path = $path.TrimEnd('\')
        if (-not (Test-SafePath $path)) {
            if ((Test-Path -LiteralPath $path) -and -not $refused.Contains($path)) { $refused.Add($path) }
            continue
        }
        # Instance scoping: a folder every instance shares is not this instance's to delete, nor evidence.
        if ($instance -and $path.IndexOf($instance, [StringComparison]::OrdinalIgnoreCase) -lt 0 -and
            -not ($installDir -and (Test-Within -Path $path -Root $installDir))) {
            $label = "$path (not specific to instance $instance)"
            if ((Test-Path -LiteralPath $path) -and -not $refused.Contains($label)) { $refused.Add($label) }
            continue
        }
        if (-not $paths.Contains($path)) { $paths.Add($path) }
        if (-not $roots.Contains($path)) { $roots.Add($path) }
    }
    if ($installDir -and -not $roots.Contains($installDir)) { $roots.Add($installDir) }

    # The vendor uninstaller: the first applicable catalog step, in catalog order.
    $secretGiven = [bool](Get-ItemSecret -Item $Item)
    $uninstaller = $null
    $blocked = $null
    $namedEntries = @(Select-NamedEntry -Item $Item -Entries $Snapshot.entries)
    foreach ($step in @(Get-List (Get-Field -Item $Item -Name 'uninstall'))) {
        $timeout = Get-Field -Item $step -Name 'timeout'
        $msiArgs = @(Get-List (Get-Field -Item $step -Name 'msi_args') | ForEach-Object { [string]$_ })
        $needsSecret = ((Get-Field -Item $step -Name 'needs_secret') -eq $true)
        if ((Get-Field -Item $step -Name 'msi_from_uninstall_entry') -eq $true) {
            $codes = @($namedEntries | Where-Object { $_.product_code } | ForEach-Object { $_.product_code } | Select-Object -Unique)
            if ($codes.Count -eq 0) { continue }
            $candidate = @{ kind = 'msi'; program = 'msiexec.exe'; product_codes = $codes; msi_args = $msiArgs; timeout = $timeout }
            $needsSecret = $needsSecret -or (Test-NeedsSecret $msiArgs)
        }
        else {
            $command = Expand-Command -Command (Get-Field -Item $step -Name 'command') -InstallDir $installDir
            $whenExists = Expand-InstallDir -Value (Get-Field -Item $step -Name 'when_exists') -InstallDir $installDir
            $chdir = Expand-InstallDir -Value (Get-Field -Item $step -Name 'chdir') -InstallDir $installDir
            if ($null -eq $command -or -not $whenExists -or -not (Test-Path -LiteralPath $whenExists -PathType Leaf)) { continue }
            $candidate = @{ kind = 'command'; program = $command[0]; command = $command; chdir = $chdir; timeout = $timeout }
            $needsSecret = $needsSecret -or (Test-NeedsSecret $command)
        }
        $candidate.needs_secret = $needsSecret
        if ($needsSecret -and -not $secretGiven) {
            if (-not $blocked) { $blocked = $candidate }
            continue
        }
        $uninstaller = $candidate
        break
    }
    if (-not $uninstaller -and $blocked) { $uninstaller = $blocked }

    $protection = $null
    $protectionFact = Get-Field -Item $Item -Name 'protection'
    if ($protectionFact) {
        $command = Expand-Command -Command (Get-Field -Item $protectionFact -Name 'command') -InstallDir $installDir
        $runnable = ($null -ne $command) -and (Test-Path -LiteralPath $command[0] -PathType Leaf)
        $protection = @{
            command = if ($runnable) { $command } else { $null }
            needs_secret = Test-NeedsSecret $command
            secret_var = [string](Get-Field -Item $protectionFact -Name 'secret_var')
            code_given = $secretGiven
        }
    }

    return @{
        instance = $instance
        install_dir = $installDir
        install_dir_source = $installDirSource
        paths = $paths.ToArray()
        roots = $roots.ToArray()
        refused = $refused
        uninstaller = $uninstaller
        protection = $protection
    }
}

Function Select-NamedEntry {
    param ($Item, $Entries)
    $found = [System.Collections.Generic.List[object]]@()
    foreach ($rule in @(Get-List (Get-Field -Item $Item -Name 'uninstall_entries'))) {
        foreach ($entry in $Entries) {
            if ((Test-DisplayName -DisplayName $entry.display_name -Rule $rule) -and -not $found.Contains($entry)) {
                $found.Add($entry)
            }
        }
    }
    # The elements, not one array: callers collect them with @(...).
    return $found.ToArray()
}

Function Get-ItemSecret {
    # The uninstall/tamper code for an item: secrets[key], else secrets[product]. Never logged or returned.
    param ($Item)
    $secrets = $module.Params.secrets
    if (-not $secrets) { return $null }
    foreach ($name in @((Get-Field -Item $Item -Name 'key'), (Get-Field -Item $Item -Name 'product'))) {
        if ($name -and $secrets.ContainsKey([string]$name) -and $secrets[[string]$name]) { return [string]$secrets[[string]$name] }
    }
    return $null
}

# Programs that run another file named on their command line: a vendor's script kept in its folder.
$scriptHosts = @('powershell', 'pwsh', 'cmd', 'wscript', 'cscript', 'rundll32', 'regsvr32', 'mshta', 'python',
    'pythonw', 'java', 'javaw', 'node', 'perl', 'ruby')

Function Get-ItemFootprint {
    # Read-only probe of one item: what the catalog names plus what is derived from evidence (anything that
    # points into the vendor's folders). $Previous (the footprint before removal) keeps the re-probe looking
    # at everything found before, even where the pointer into the vendor's folder is gone by now.
    param ($Item, $Scope, $Snapshot, $Previous)
    $roots = $Scope.roots
    $byName = -not $Scope.instance
    $kept = [System.Collections.Generic.List[string]]@()
    $leftovers = Get-Field -Item $Item -Name 'leftovers'

    # Services: named (catalog and leftovers), or derived from an ImagePath that points into a root.
    $services = [System.Collections.Generic.List[object]]@()
    $seen = @{}
    $main = @(@(Get-List (Get-Field -Item $Item -Name 'services')) | ForEach-Object { (Get-FactText -Fact $_ -Field 'name').ToLowerInvariant() })
    $named = $main + @(@(Get-List (Get-Field -Item $leftovers -Name 'services')) |
            ForEach-Object { (Get-FactText -Fact $_ -Field 'name').ToLowerInvariant() })
    $before = @{}
    if ($Previous) { foreach ($svc in $Previous.services) { $before[$svc.name.ToLowerInvariant()] = $svc } }
    foreach ($svc in $Snapshot.services) {
        $lower = $svc.name.ToLowerInvariant()
        if ($seen.ContainsKey($lower)) { continue }
        $root = Find-ReferencedRoot -Text $svc.image_path -Roots $roots
        $derivedFrom = $null
        if ($root) {
            if ($named -notcontains $lower) { $derivedFrom = "ImagePath=$($svc.image_path)" }
        }
        elseif ($named -contains $lower) {
            # A leftover name (generic ones like a WinRing0 driver exist) whose program is elsewhere and still
            # there: another product's service.
            if ($main -notcontains $lower -and $svc.image_file -and (Test-Path -LiteralPath $svc.image_file)) {
                $kept.Add("service $($svc.name): its program $($svc.image_file) lies outside the vendor's folders")
                continue
            }
        }
        elseif ($before.ContainsKey($lower)) { $derivedFrom = $before[$lower].derived_from }
        else { continue }
        $seen[$lower] = $true
        $entry = @{
            name = $svc.name; display_name = $svc.display_name; state = $svc.state; start_mode = $svc.start_mode
            enabled = $svc.enabled; image_path = $svc.image_path; pid = $svc.pid
        }
        if ($derivedFrom) { $entry.derived_from = $derivedFrom }
        $services.Add($entry)
    }

    # Processes: by program path under a root; by a command line naming one when the program is a script
    # host (the vendor's script runs from its folder); by catalog name for items without an instance.
    $names = @(@(Get-List (Get-Field -Item $Item -Name 'processes')) | ForEach-Object {
            ((Get-FactText -Fact $_ -Field 'name') -replace '\.exe$', '').ToLowerInvariant()
        })
    $processes = [System.Collections.Generic.List[object]]@()
    foreach ($proc in $Snapshot.processes) {
        $procName = ([string]$proc.Name -replace '\.exe$', '').ToLowerInvariant()
        $exe = [string]$proc.ExecutablePath
        $underRoot = if ($exe) { @($roots | Where-Object { Test-Within -Path $exe -Root $_ }) | Select-Object -First 1 } else { $null }
        $derivedFrom = $null
        if (-not $underRoot -and $scriptHosts -contains $procName) {
            $root = Find-ReferencedRoot -Text ([string]$proc.CommandLine) -Roots $roots
            if ($root) { $derivedFrom = "command line names $root" }
        }
        $isNamed = $byName -and $names -contains $procName
        if ($underRoot -and -not $isNamed) { $derivedFrom = "program under $underRoot" }
        if (-not $underRoot -and -not $derivedFrom -and -not $isNamed) { continue }
        $entry = @{ pid = [int]$proc.ProcessId; name = [string]$proc.Name; exe = $exe }
        if ($derivedFrom) { $entry.derived_from = $derivedFrom }
        $processes.Add($entry)
    }

    # Startup entries: scheduled tasks and Run/RunOnce values that start something in a root.
    $startup = [System.Collections.Generic.List[object]]@()
    $beforeStartup = @{}
    if ($Previous) { foreach ($s in $Previous.startup) { $beforeStartup["$($s.kind)|$($s.where)|$($s.value)"] = $s } }
    foreach ($task in $Snapshot.tasks) {
        foreach ($action in $task.actions) {
            $root = Find-ReferencedRoot -Text $action -Roots $roots
            $earlier = $beforeStartup["scheduled_task|$($task.path)|"]
            if ($root -or $earlier) {
                $startup.Add(@{
                        kind = 'scheduled_task'; where = $task.path; entry = $action; value = $null
                        derived_from = if ($root) { "action runs from $root" } else { $earlier.derived_from }
                    })
                break
            }
        }
    }
    foreach ($run in $Snapshot.runs) {
        $root = Find-ReferencedRoot -Text $run.data -Roots $roots
        $earlier = $beforeStartup["run_key|$($run.key)|$($run.value)"]
        if ($root -or $earlier) {
            $startup.Add(@{
                    kind = 'run_key'; where = $run.key; entry = "$($run.value)=$($run.data)"; value = $run.value
                    derived_from = if ($root) { "value data runs from $root" } else { $earlier.derived_from }
                })
        }
    }

    # Add/Remove Programs entries: by catalog display name, or derived from a location in a root.
    $entries = [System.Collections.Generic.List[object]]@()
    $namedEntries = @(Select-NamedEntry -Item $Item -Entries $Snapshot.entries)
    $beforeEntries = @{}
    if ($Previous) { foreach ($e in $Previous.uninstall_entries) { $beforeEntries[$e.key] = $e } }
    foreach ($candidate in $Snapshot.entries) {
        $derivedFrom = $null
        if ($namedEntries -notcontains $candidate) {
            foreach ($field in @('install_location', 'uninstall_string', 'display_icon')) {
                $root = Find-ReferencedRoot -Text $candidate[$field] -Roots $roots
                if ($root) { $derivedFrom = "$field in $root"; break }
            }
            if (-not $derivedFrom -and $beforeEntries.ContainsKey($candidate.key)) {
                $derivedFrom = $beforeEntries[$candidate.key].derived_from
            }
            if (-not $derivedFrom) { continue }
        }
        $entry = @{}
        foreach ($k in $candidate.Keys) { $entry[$k] = $candidate[$k] }
        if ($derivedFrom) { $entry.derived_from = $derivedFrom }
        $entries.Add($entry)
    }

    # Catalog paths and registry keys/values that exist.
    $paths = @($Scope.paths | Where-Object { Test-Path -LiteralPath $_ })
    $registryTargets = [System.Collections.Generic.List[object]]@()
    $registry = [System.Collections.Generic.List[string]]@()
    foreach ($fact in @(Get-List (Get-Field -Item $Item -Name 'registry')) + @(Get-List (Get-Field -Item $leftovers -Name 'registry'))) {
        $target = Get-RegistryTarget $fact
        if (-not $target.key) { continue }
        $label = if ($target.value) { "$($target.key) [$($target.value)]" } else { $target.key }
        if ($registry.Contains($label)) { continue }
        if (-not $target.value -and -not (Test-SafeKey $target.key)) {
            if ((Test-RegistryTarget $target) -and -not $Scope.refused.Contains($target.key)) { $Scope.refused.Add($target.key) }
            continue
        }
        if (Test-RegistryTarget $target) {
            $registryTargets.Add($target)
            $registry.Add($label)
        }
    }

    $footprint = @{
        packages = @()
        services = $services.ToArray()
        processes = $processes.ToArray()
        paths = @($paths)
        startup = $startup.ToArray()
        registry = $registry.ToArray()
        uninstall_entries = $entries.ToArray()
    }
    return @{ footprint = $footprint; registry_targets = $registryTargets.ToArray(); kept = $kept.ToArray() }
}

Function Test-FootprintEmpty {
    param ($Footprint)
    foreach ($list in @('packages', 'services', 'processes', 'paths', 'startup', 'registry', 'uninstall_entries')) {
        foreach ($entry in $Footprint[$list]) {
            if ($null -ne $entry) { return $false }
        }
    }
    return $true
}

# ---------------------------------------------------------------------------------------------------
# Running programs: one bounded run for the protection lift, the vendor uninstaller and msiexec.
Function Add-Descendant {
    # Grows $Tree (pid -> $true) with every process whose parent is in it and that started after $Since
    # (process ids are reused); returns the ids of the tree's processes that are alive.
    param ([hashtable]$Tree, [datetime]$Since)
    $all = @(Get-CimInstance -ClassName Win32_Process -Property 'ProcessId', 'ParentProcessId', 'CreationDate')
    do {
        $grown = $false
        foreach ($p in $all) {
            $id = [int]$p.ProcessId
            if (-not $Tree.ContainsKey($id) -and $Tree.ContainsKey([int]$p.ParentProcessId) -and $p.CreationDate -ge $Since) {
                $Tree[$id] = $true
                $grown = $true
            }
        }
    } while ($grown)
    # The elements, not one array: callers collect them with @(...).
    return @($all | Where-Object { $Tree.ContainsKey([int]$_.ProcessId) } | ForEach-Object { [int]$_.ProcessId })
}

Function Invoke-BoundedProcess {
    # Runs one program for at most TimeoutSeconds, including every process it starts (Inno Setup and NSIS
    # uninstallers copy themselves to %TEMP%, start the copy and exit at once: the copy is waited for too),
    # then kills the whole tree. Returns rc (null when it timed out), timed_out and seconds. The program's
    # output is drained and dropped: it may echo an uninstall code, and output inherited on the module's
    # own stdout would corrupt its JSON result. Its stdin is closed, so a prompt reads end-of-file.
    param (
        [Parameter(Mandatory = $true)] [string]$FilePath,
        [string]$Arguments = '',
        [string]$WorkingDirectory = '',
        [Parameter(Mandatory = $true)] [int]$TimeoutSeconds
    )
    $started = Get-Date
    $deadline = $started.AddSeconds([Math]::Max(1, $TimeoutSeconds))
    $info = New-Object -TypeName System.Diagnostics.ProcessStartInfo
    $info.FileName = $FilePath
    $info.Arguments = $Arguments
    $info.UseShellExecute = $false
    $info.CreateNoWindow = $true
    $info.RedirectStandardInput = $true
    $info.RedirectStandardOutput = $true
    $info.RedirectStandardError = $true
    if ($WorkingDirectory) { $info.WorkingDirectory = $WorkingDirectory }
    $process = [System.Diagnostics.Process]::Start($info)
    $process.StandardInput.Close()
    $null = $process.StandardOutput.ReadToEndAsync()
    $null = $process.StandardError.ReadToEndAsync()
    $rootId = [int]$process.Id
    $tree = @{ $rootId = $true }
    $timedOut = $false
    $rc = $null
    while (-not $process.WaitForExit(1000)) {
        $null = Add-Descendant -Tree $tree -Since $started
        if ((Get-Date) -ge $deadline) { $timedOut = $true; break }
    }
    if (-not $timedOut) {
        $rc = $process.ExitCode
        # Children started in its last second, then forget the root: its id may be reused from now on.
        $null = Add-Descendant -Tree $tree -Since $started
        $tree.Remove($rootId)
        while (@(Add-Descendant -Tree $tree -Since $started).Count -gt 0) {
            if ((Get-Date) -ge $deadline) { $timedOut = $true; break }
            Start-Sleep -Seconds 1
        }
    }
    if ($timedOut) {
        foreach ($id in @(Add-Descendant -Tree $tree -Since $started)) {
            Stop-Process -Id $id -Force -ErrorAction SilentlyContinue
        }
        if (-not $process.HasExited) { Stop-Process -Id $rootId -Force -ErrorAction SilentlyContinue }
    }
    return @{ rc = $rc; timed_out = $timedOut; seconds = [int]((Get-Date) - $started).TotalSeconds }
}

Function ConvertTo-ArgumentString {
    # The command line after the program, from an argv list: an argument with a blank is quoted (a trailing
    # backslash doubled, so it does not escape the quote); one that already holds quotes (msiexec's
    # PROPERTY="a b") is passed as it is, because msiexec does not parse its command line by the C runtime
    # rules.
    param ([string[]]$Argv)
    $parts = foreach ($arg in $Argv) {
        if ($arg.Contains('"') -or ($arg.Length -gt 0 -and $arg -notmatch '\s')) { $arg }
        elseif ($arg.EndsWith('\')) { '"' + $arg + '\"' }
        else { '"' + $arg + '"' }
    }
    return (@($parts) -join ' ')
}

Function Invoke-Argv {
    # Runs an argv template: {secret} is replaced by the code for the run only; the returned detail shows the
    # template, never the code.
    param ([string[]]$Argv, [string]$Secret, [string]$WorkingDirectory, [int]$TimeoutSeconds, [string]$Method)
    $real = @($Argv | ForEach-Object { if ($Secret) { $_.Replace('{secret}', $Secret) } else { $_ } })
    $shown = ConvertTo-ArgumentString -Argv $Argv
    try {
        $run = Invoke-BoundedProcess -FilePath $real[0] -Arguments (ConvertTo-ArgumentString -Argv @($real | Select-Object -Skip 1)) `
            -WorkingDirectory $WorkingDirectory -TimeoutSeconds $TimeoutSeconds
        $outcome = if ($run.timed_out) { "timed out after $($run.seconds) s, process tree killed" } else { "rc $($run.rc)" }
        return @{ method = $Method; rc = $run.rc; timed_out = $run.timed_out; detail = "$($shown): $outcome" }
    }
    catch {
        return @{ method = $Method; rc = $null; timed_out = $false; detail = "$($shown): could not start: $($_.Exception.Message)" }
    }
}

Function Get-MsiArgv {
    param ([string]$ProductCode, $MsiArgs)
    $extra = @(@(Get-List $MsiArgs) | Where-Object { $_ -notin @('/qn', '/norestart') })
    return @("$systemRoot\System32\msiexec.exe", '/x', $ProductCode, '/qn', '/norestart') + $extra
}

Function Get-RunTimeout {
    param ($StepTimeout)
    $limit = [int]$module.Params.timeout
    if ($StepTimeout -and [int]$StepTimeout -gt 0 -and [int]$StepTimeout -lt $limit) { return [int]$StepTimeout }
    return $limit
}

# ---------------------------------------------------------------------------------------------------
# Forced removal: whatever discovery still sees, deleted directly.
Function Remove-Tree {
    # Deletes a folder without following junctions or symbolic links: a link is removed as a link, never
    # descended into (Remove-Item -Recurse in Windows PowerShell 5.1 can descend into them). Read-only
    # attributes are cleared first.
    param ([string]$Path)
    $item = Get-Item -LiteralPath $Path -Force
    $reparse = [IO.FileAttributes]::ReparsePoint
    if (-not $item.PSIsContainer) {
        $item.Attributes = [IO.FileAttributes]::Normal
        [IO.File]::Delete($Path)
        return
    }
    if ($item.Attributes -band $reparse) {
        [IO.Directory]::Delete($Path, $false)
        return
    }
    $dirs = [System.Collections.Generic.List[IO.DirectoryInfo]]@()
    $stack = [System.Collections.Generic.Stack[IO.DirectoryInfo]]::new()
    $stack.Push([IO.DirectoryInfo]$Path)
    while ($stack.Count -gt 0) {
        $dir = $stack.Pop()
        $dirs.Add($dir)
        foreach ($entry in $dir.GetFileSystemInfos()) {
            if ($entry.Attributes -band [IO.FileAttributes]::ReadOnly) {
                $entry.Attributes = $entry.Attributes -band -bnot [IO.FileAttributes]::ReadOnly
            }
            if ($entry -is [IO.DirectoryInfo]) {
                if ($entry.Attributes -band $reparse) { [IO.Directory]::Delete($entry.FullName, $false) }
                else { $stack.Push($entry) }
            }
            else { $entry.Delete() }
        }
    }
    # Deepest first: every folder was listed after its parent.
    for ($i = $dirs.Count - 1; $i -ge 0; $i--) {
        $dirs[$i].Attributes = [IO.FileAttributes]::Directory
        $dirs[$i].Delete()
    }
}

Function Remove-Forced {
    # Stops, disables and deletes the services, kills the processes, unregisters the scheduled tasks and
    # Run values, deletes the non-MSI Add/Remove Programs entries (MSI ones belong to Windows Installer and
    # stay visible until msiexec removes them), the paths and the registry keys/values. Returns the attempt.
    param ($Probe, [bool]$RemoveLeftovers)
    $footprint = $Probe.footprint
    $done = [System.Collections.Generic.List[string]]@()
    $errors = [System.Collections.Generic.List[string]]@()
    $sc = "$systemRoot\System32\sc.exe"

    foreach ($svc in $footprint.services) {
        try {
            # sc.exe is the only tool that disables and deletes drivers and services alike on Windows
            # PowerShell 5.1 (Remove-Service is 6+).
            $null = & $sc config $svc.name 'start=' 'disabled' 2>&1
            try {
                $controller = [System.ServiceProcess.ServiceController]::new($svc.name)
                if ($controller.Status -ne 'Stopped') {
                    $controller.Stop()
                    $controller.WaitForStatus('Stopped', [TimeSpan]::FromSeconds(30))
                }
            }
            catch { $null = $_ }
            if ($svc.pid -gt 0) { Stop-Process -Id $svc.pid -Force -ErrorAction SilentlyContinue }
            $out = & $sc delete $svc.name 2>&1
            # 1060: does not exist (any more); 1072: already marked for deletion.
            if ($LASTEXITCODE -notin @(0, 1060, 1072)) { $errors.Add("sc.exe delete $($svc.name): rc $LASTEXITCODE $out") }
            else { $done.Add("service $($svc.name)") }
        }
        catch { $errors.Add("service $($svc.name): $($_.Exception.Message)") }
    }

    foreach ($proc in $footprint.processes) {
        $current = Get-CimInstance -ClassName Win32_Process -Filter "ProcessId = $([int]$proc.pid)" -Property 'ExecutablePath'
        # The id may belong to another program by now.
        if ($current -and ([string]$current.ExecutablePath -eq [string]$proc.exe)) {
            Stop-Process -Id $proc.pid -Force -ErrorAction SilentlyContinue
            $done.Add("process $($proc.name) ($($proc.pid))")
        }
    }
    if ($footprint.processes.Count -or $footprint.services.Count) { Start-Sleep -Seconds 2 }

    foreach ($startup in $footprint.startup) {
        try {
            if ($startup.kind -eq 'scheduled_task') {
                $scheduler = New-Object -ComObject 'Schedule.Service'
                $scheduler.Connect()
                $cut = $startup.where.LastIndexOf('\')
                $parent = if ($cut -le 0) { '\' } else { $startup.where.Substring(0, $cut) }
                $scheduler.GetFolder($parent).DeleteTask($startup.where.Substring($cut + 1), 0)
                $done.Add("scheduled task $($startup.where)")
            }
            elseif ($startup.kind -eq 'run_key') {
                Remove-ItemProperty -LiteralPath (ConvertTo-ProviderPath $startup.where) -Name $startup.value -Force
                $done.Add("$($startup.where) [$($startup.value)]")
            }
        }
        catch { $errors.Add("$($startup.kind) $($startup.where): $($_.Exception.Message)") }
    }

    if ($RemoveLeftovers) {
        foreach ($entry in $footprint.uninstall_entries) {
            if ($entry.windows_installer -or -not (Test-SafeKey $entry.key)) { continue }
            try {
                Remove-Item -LiteralPath (ConvertTo-ProviderPath $entry.key) -Recurse -Force
                $done.Add("uninstall entry $($entry.display_name)")
            }
            catch { $errors.Add("$($entry.key): $($_.Exception.Message)") }
        }
        foreach ($path in $footprint.paths) {
            if (-not (Test-Path -LiteralPath $path) -or -not (Test-SafePath $path)) { continue }
            try {
                Remove-Tree -Path $path
                $done.Add($path)
            }
            catch { $errors.Add("$($path): $($_.Exception.Message)") }
        }
        foreach ($target in $Probe.registry_targets) {
            $label = if ($target.value) { "$($target.key) [$($target.value)]" } else { $target.key }
            if (-not (Test-RegistryTarget $target)) { continue }
            try {
                $providerPath = ConvertTo-ProviderPath $target.key
                if ($target.value) { Remove-ItemProperty -LiteralPath $providerPath -Name $target.value -Force }
                elseif (Test-SafeKey $target.key) { Remove-Item -LiteralPath $providerPath -Recurse -Force }
                else { continue }
                $done.Add($label)
            }
            catch { $errors.Add("$($label): $($_.Exception.Message)") }
        }
    }
    $detail = "removed: $(if ($done.Count) { $done -join ', ' } else { 'nothing' })"
    if ($errors.Count) { $detail += "; errors: $($errors -join '; ')" }
    if (-not $RemoveLeftovers) { $detail += '; paths and registry kept (remove_leftovers=false)' }
    if ($detail.Length -gt 4000) { $detail = $detail.Substring(0, 4000) + '...' }
    return @{ method = 'forced'; rc = $null; timed_out = $false; detail = $detail; removed = $done.Count }
}

# ---------------------------------------------------------------------------------------------------
Function Invoke-ItemRemoval {
    # The layers, each only if something is still there: vendor uninstaller -> package manager (msiexec
    # for every MSI entry, named or derived, not tried yet) -> forced -> re-probe of the whole derived set.
    # A failing layer never stops the next one.
    param ($Item, $Scope, $Probe)
    $secret = Get-ItemSecret -Item $Item
    $attempts = [System.Collections.Generic.List[object]]@()
    $protectionRun = $null
    $method = $null
    $before = $Probe.footprint
    $current = $Probe
    $triedCodes = @{}

    if ($Scope.protection -and $Scope.protection.command) {
        if ($Scope.protection.needs_secret -and -not $secret) {
            $protectionRun = @{ ran = $false; rc = $null; timed_out = $false; detail = 'not run: it needs the uninstall code and secrets has none for this item' }
        }
        else {
            $run = Invoke-Argv -Argv $Scope.protection.command -Secret $secret -TimeoutSeconds ([Math]::Min(60, [int]$module.Params.timeout)) -Method 'protection'
            $protectionRun = @{ ran = $true; rc = $run.rc; timed_out = $run.timed_out; detail = $run.detail }
            # The vendors' scripts give the agent a few seconds to drop its guard before uninstalling.
            if ($run.rc -eq 0) { Start-Sleep -Seconds 5 }
        }
    }

    $plan = $Scope.uninstaller
    if ($plan) {
        if ($plan.needs_secret -and -not $secret) {
            $attempts.Add(@{
                    method = 'vendor_uninstaller'; rc = $null; timed_out = $false
                    detail = 'not run: the catalog uninstaller needs the uninstall code and secrets has none for this item'
                })
        }
        elseif ($plan.kind -eq 'msi') {
            foreach ($code in $plan.product_codes) {
                $triedCodes[$code] = $true
                $attempts.Add((Invoke-Argv -Argv (Get-MsiArgv -ProductCode $code -MsiArgs $plan.msi_args) -Secret $secret `
                            -TimeoutSeconds (Get-RunTimeout $plan.timeout) -Method 'vendor_uninstaller'))
            }
        }
        else {
            $attempts.Add((Invoke-Argv -Argv $plan.command -Secret $secret -WorkingDirectory ([string]$plan.chdir) `
                        -TimeoutSeconds (Get-RunTimeout $plan.timeout) -Method 'vendor_uninstaller'))
        }
        $current = Get-ItemFootprint -Item $Item -Scope $Scope -Snapshot (Get-HostSnapshot) -Previous $before
        if (Test-FootprintEmpty $current.footprint) { $method = 'vendor_uninstaller' }
    }

    if (-not $method) {
        $codes = @($current.footprint.uninstall_entries | Where-Object { $_.product_code -and -not $triedCodes.ContainsKey($_.product_code) } |
                ForEach-Object { $_.product_code } | Select-Object -Unique)
        foreach ($code in $codes) {
            $attempts.Add((Invoke-Argv -Argv (Get-MsiArgv -ProductCode $code -MsiArgs @()) -TimeoutSeconds (Get-RunTimeout $null) -Method 'package_manager'))
        }
        if ($codes.Count) {
            $current = Get-ItemFootprint -Item $Item -Scope $Scope -Snapshot (Get-HostSnapshot) -Previous $before
            if (Test-FootprintEmpty $current.footprint) { $method = 'package_manager' }
        }
    }

    if (-not $method -and -not (Test-FootprintEmpty $current.footprint)) {
        $forced = Remove-Forced -Probe $current -RemoveLeftovers $module.Params.remove_leftovers
        $forced.Remove('removed')
        $attempts.Add($forced)
        $current = Get-ItemFootprint -Item $Item -Scope $Scope -Snapshot (Get-HostSnapshot) -Previous $before
        if (Test-FootprintEmpty $current.footprint) { $method = 'forced' }
    }

    $remaining = $current.footprint
    $rcs = @($attempts | Where-Object { $null -ne $_.rc } | ForEach-Object { [int]$_.rc })
    # A service marked for deletion (its program still held open) goes at the next boot: it is still there.
    $pendingDelete = 0
    foreach ($svc in $remaining.services) {
        $flags = Get-ItemProperty -LiteralPath "Registry::HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services\$($svc.name)" -ErrorAction SilentlyContinue
        if ($flags -and $flags.DeleteFlag -eq 1) {
            $svc.pending_delete = $true
            $pendingDelete++
        }
    }
    return @{
        attempts = $attempts.ToArray()
        method = $method
        remaining = $remaining
        verified_absent = Test-FootprintEmpty $remaining
        protection = $protectionRun
        # 1641/3010: the installer asked for a restart; a service marked for deletion goes at the next boot.
        reboot_required = [bool](($rcs | Where-Object { $_ -in @(1641, 3010) }) -or $pendingDelete)
    }
}

Function Hide-Secret {
    # Defence in depth: no code passed in `secrets` survives in any text of the result (edited in place).
    param ($Value, [string[]]$Codes)
    if ($Value -is [string]) {
        foreach ($code in $Codes) { $Value = $Value.Replace($code, '********') }
        return $Value
    }
    if ($Value -is [System.Collections.IDictionary]) {
        foreach ($k in @($Value.Keys)) { $Value[$k] = Hide-Secret -Value $Value[$k] -Codes $Codes }
    }
    elseif ($Value -is [System.Collections.IList]) {
        for ($i = 0; $i -lt $Value.Count; $i++) { $Value[$i] = Hide-Secret -Value $Value[$i] -Codes $Codes }
    }
    return , $Value
}

# ---------------------------------------------------------------------------------------------------
$state = $module.Params.state
$snapshot = Get-HostSnapshot
$results = [System.Collections.Generic.List[object]]@()
$changed = $false

foreach ($item in $module.Params.items) {
    if (-not (Get-Field -Item $item -Name 'key')) {
        $module.FailJson("every item needs a 'key' (built by offboard_agent_scope)")
    }
    $scope = Get-ItemScope -Item $item -Snapshot $snapshot
    $probe = Get-ItemFootprint -Item $item -Scope $scope -Snapshot $snapshot -Previous $null
    $found = -not (Test-FootprintEmpty $probe.footprint)
    $result = @{
        key = Get-Field -Item $item -Name 'key'
        product = Get-Field -Item $item -Name 'product'
        instance = Get-Field -Item $item -Name 'instance'
        name = Get-Field -Item $item -Name 'name'
        category = Get-Field -Item $item -Name 'category'
        found = $found
        footprint = $probe.footprint
        refused = $scope.refused.ToArray()
        kept = $probe.kept
        install_dir = $scope.install_dir
        install_dir_source = $scope.install_dir_source
        uninstaller = $scope.uninstaller
        protection = if ($scope.protection) {
            @{
                available = $null -ne $scope.protection.command; needs_secret = $scope.protection.needs_secret
                secret_var = $scope.protection.secret_var; code_given = $scope.protection.code_given
            }
        } else { $null }
    }
    if ($state -eq 'absent' -and $found) {
        if ($checkMode) {
            $changed = $true
            $planned = [System.Collections.Generic.List[string]]@()
            if ($scope.protection -and $scope.protection.command) { $planned.Add("lift protection: $(ConvertTo-ArgumentString -Argv $scope.protection.command)") }
            if ($scope.uninstaller -and $scope.uninstaller.kind -eq 'msi') {
                foreach ($code in $scope.uninstaller.product_codes) { $planned.Add("vendor_uninstaller: $(ConvertTo-ArgumentString -Argv (Get-MsiArgv -ProductCode $code -MsiArgs $scope.uninstaller.msi_args))") }
            }
            elseif ($scope.uninstaller) { $planned.Add("vendor_uninstaller: $(ConvertTo-ArgumentString -Argv $scope.uninstaller.command)") }
            $planned.Add('package_manager: msiexec /x for MSI entries still present')
            $planned.Add('forced: delete whatever is still present (footprint)')
            $result.removal = @{
                attempts = @(); method = $null; remaining = $probe.footprint; verified_absent = $false
                protection = $null; reboot_required = $false; planned = $planned.ToArray()
            }
        }
        else {
            try {
                $result.removal = Invoke-ItemRemoval -Item $item -Scope $scope -Probe $probe
            }
            catch {
                # An unexpected error ends this item's removal only: re-probe it and say what remains.
                $message = $_.Exception.Message
                $after = Get-ItemFootprint -Item $item -Scope $scope -Snapshot (Get-HostSnapshot) -Previous $probe.footprint
                $result.removal = @{
                    attempts = @(@{ method = 'forced'; rc = $null; timed_out = $false; detail = "error: $message" })
                    method = $null; remaining = $after.footprint; verified_absent = Test-FootprintEmpty $after.footprint
                    protection = $null; reboot_required = $false
                }
            }
            $changed = $true
            # The next item must see the host as it is now.
            $snapshot = Get-HostSnapshot
        }
    }
    $results.Add($result)
}

$codes = @($module.Params.secrets.Values | Where-Object { $_ } | ForEach-Object { [string]$_ })
$items = $results.ToArray()
if ($codes.Count) { $null = Hide-Secret -Value $items -Codes $codes }
$module.Result.items = $items
$module.Result.changed = $changed
$module.ExitJson()

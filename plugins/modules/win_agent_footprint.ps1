#!powershell
# Copyright: the offboard project contributors
# Apache-2.0
# Documentation: win_agent_footprint.py next to this file.

#AnsibleRequires -CSharpUtil Ansible.Basic

$spec = @{
    options = @{
        items = @{ type = 'list'; elements = 'dict'; required = $true }
        state = @{ type = 'str'; choices = @('query', 'absent'); default = 'query' }
        remove_leftovers = @{ type = 'bool'; default = $true }
    }
    supports_check_mode = $true
}
$module = [Ansible.Basic.AnsibleModule]::Create($args, $spec)
$checkMode = $module.CheckMode
$ErrorActionPreference = 'Stop'

# ---------------------------------------------------------------------------------------------------
# Safety: a catalog typo (or a fact the scope filter flattened) must never delete a system folder or a
# shared registry container. A target is refused when it IS, or CONTAINS, one of these.
$systemDrive = if ($env:SystemDrive) { $env:SystemDrive } else { 'C:' }
$systemRoot = if ($env:SystemRoot) { $env:SystemRoot } else { 'C:\Windows' }
$protectedPaths = [System.Collections.Generic.List[string]]@(
    "$systemDrive\", $systemRoot, "$systemRoot\System32", "$systemRoot\SysWOW64", "$systemRoot\Temp",
    "$systemRoot\System32\drivers", "$systemRoot\System32\Tasks",
    "$systemRoot\System32\config\systemprofile\AppData\Local",
    "$systemRoot\System32\config\systemprofile\AppData\Roaming",
    "$systemRoot\SysWOW64\config\systemprofile\AppData\Local",
    'C:\Program Files\Common Files', 'C:\Program Files (x86)\Common Files',
    'C:\ProgramData\Microsoft\Windows\Start Menu\Programs\Startup',
    'C:\Users\Public\Documents', 'C:\Users\Public\Desktop', 'C:\Users\Default',
    'C:\Program Files\WindowsApps', 'C:\Program Files\Windows Defender', 'C:\ProgramData\Microsoft\Windows Defender'
)
foreach ($leaf in @('Installer', 'WinSxS', 'Fonts', 'Boot', 'INF', 'assembly', 'Microsoft.NET', 'servicing', 'SystemApps', 'Logs')) {
    $protectedPaths.Add("$systemRoot\$leaf")
}
foreach ($name in @('ProgramFiles', 'ProgramFiles(x86)', 'ProgramW6432', 'ProgramData', 'PUBLIC', 'ALLUSERSPROFILE')) {
    $value = [Environment]::GetEnvironmentVariable($name)
    if ($value) { $protectedPaths.Add($value) }
}
$protectedRegistry = [System.Collections.Generic.List[string]]@(
    'HKLM:\SOFTWARE\Classes\Installer\Products',
    'HKLM:\SOFTWARE\Policies\Microsoft',
    'HKLM:\SYSTEM\Setup',
    'HKCR:\Installer\Products',
    'HKCR:\CLSID', 'HKCR:\Interface', 'HKCR:\TypeLib', 'HKCR:\AppID', 'HKCR:\exefile', 'HKCR:\.exe',
    'HKCR:\Directory', 'HKCR:\Folder', 'HKCR:\http', 'HKCR:\https',
    'HKU:\.DEFAULT\Software\Microsoft',
    'HKU:\S-1-5-18\Software\Microsoft',
    'HKU:\S-1-5-19\Software\Microsoft',
    'HKU:\S-1-5-20\Software\Microsoft',
    'HKCU:\Software\Microsoft',
    'HKCC:\System'
)
foreach ($software in @('HKLM:\SOFTWARE', 'HKLM:\SOFTWARE\WOW6432Node')) {
    foreach ($leaf in @(
            'Microsoft\Windows\CurrentVersion\Run', 'Microsoft\Windows\CurrentVersion\RunOnce',
            'Microsoft\Windows\CurrentVersion\Uninstall',
            'Microsoft\Windows\CurrentVersion\Installer\UserData\S-1-5-18\Products',
            'Microsoft\Windows\Windows Error Reporting\LocalDumps',
            'Microsoft\Windows NT\CurrentVersion\Winlogon', 'Classes\CLSID')) {
        $protectedRegistry.Add("$software\$leaf")
    }
}
foreach ($controlSet in @('CurrentControlSet', 'ControlSet001', 'ControlSet002')) {
    foreach ($leaf in @(
            'Services\EventLog\Application', 'Services\EventLog\System',
            'Control\SafeBoot\Network', 'Control\SafeBoot\Minimal', 'Enum')) {
        $protectedRegistry.Add("HKLM:\SYSTEM\$controlSet\$leaf")
    }
}
$hives = @{
    'HKLM' = 'HKEY_LOCAL_MACHINE'; 'HKCU' = 'HKEY_CURRENT_USER'; 'HKCR' = 'HKEY_CLASSES_ROOT'
    'HKU' = 'HKEY_USERS'; 'HKCC' = 'HKEY_CURRENT_CONFIG'
}

Function Test-Within {
    # True when $Path is $Root or lies below it (case-insensitive, backslash separated).
    param ([string]$Path, [string]$Root)
    $p = $Path.TrimEnd('\')
    $r = $Root.TrimEnd('\')
    return ($p -eq $r) -or $p.StartsWith("$r\", [StringComparison]::OrdinalIgnoreCase)
}

Function Test-SafePath {
    # Absolute drive path, no wildcard, no '..', normalised, at least two levels deep, not a system folder.
    param ([string]$Path)
    if (-not $Path -or $Path -notmatch '^[A-Za-z]:\\[^\\]+\\[^\\]' -or $Path.IndexOfAny([char[]]'*?') -ge 0) {
        return $false
    }
    if ($Path -match '(^|\\)\.\.?(\\|$)' -or $Path -match '\\\\') { return $false }
    # A whole user profile is never an agent's leftover.
    if ($Path -match '^[A-Za-z]:\\Users\\[^\\]+\\?$') { return $false }
    foreach ($protected in $protectedPaths) {
        if (Test-Within -Path $protected -Root $Path) { return $false }
    }
    return $true
}

Function Test-SafeKey {
    # A key below a hive, two levels deep at least, not a shared container (nor one of its parents).
    param ([string]$Key)
    # HKCR:\<ProgID> is one level deep (Datto's cag: URL handler); everywhere else two levels at least.
    $depth = if ($Key -match '^HKCR:') { '^HKCR:\\[^\\]' } else { '^(HKLM|HKCU|HKU|HKCC):\\[^\\]+\\[^\\]' }
    if (-not $Key -or $Key -notmatch $depth -or $Key.IndexOfAny([char[]]'*?') -ge 0) {
        return $false
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

Function Expand-Command {
    # An argv list with {install_dir} resolved; $null when any part needs an unknown install folder.
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

Function Expand-InstallDir {
    # '{install_dir}\x.exe' -> 'D:\Ninja\x.exe'; $null when the install folder is unknown on this host.
    param ([string]$Value, [string]$InstallDir)
    if ($null -eq $Value -or -not $Value.Contains('{install_dir}')) { return $Value }
    if (-not $InstallDir) { return $null }
    return $Value.Replace('{install_dir}', $InstallDir)
}

# ---------------------------------------------------------------------------------------------------
# Host-wide snapshots, taken once per module run (refreshed after removals).
Function Get-ServiceTable {
    $table = @{}
    $controllers = @([System.ServiceProcess.ServiceController]::GetServices()) +
        @([System.ServiceProcess.ServiceController]::GetDevices())
    $processIds = @{}
    foreach ($svc in @(Get-CimInstance -ClassName Win32_Service -Property Name, ProcessId)) {
        $processIds[$svc.Name.ToLowerInvariant()] = [int]$svc.ProcessId
    }
    foreach ($controller in $controllers) {
        $name = $controller.ServiceName
        $regKey = "Registry::HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services\$name"
        $imagePath = $null
        $start = $null
        try {
            $props = Get-ItemProperty -LiteralPath $regKey -ErrorAction Stop
            $imagePath = $props.ImagePath
            $start = $props.Start
        }
        catch { $null = $_ }
        $table[$name.ToLowerInvariant()] = @{
            name = $name
            display_name = $controller.DisplayName
            status = $controller.Status.ToString()
            start = $start
            image_path = $imagePath
            pid = $processIds[$name.ToLowerInvariant()]
        }
    }
    return $table
}

Function Get-ProcessList {
    return , @(Get-CimInstance -ClassName Win32_Process -Property ProcessId, Name, ExecutablePath |
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
                    windows_installer = $isMsi
                    product_code = if ($isMsi) { $keyName.ToUpperInvariant() } else { $null }
                    uninstall_string = [string]$props.UninstallString
                    quiet_uninstall_string = [string]$props.QuietUninstallString
                })
        }
    }
    return , $entries.ToArray()
}

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

# ---------------------------------------------------------------------------------------------------
Function Get-ItemFootprint {
    # Read-only probe of one catalog item.
    param ($Item, $Services, $Processes, $UninstallEntries)
    $refused = [System.Collections.Generic.List[string]]@()
    $leftovers = Get-Field -Item $Item -Name 'leftovers'

    $installDir = $null
    $installDirFrom = Get-Field -Item $Item -Name 'install_dir_from'
    if ($installDirFrom) {
        try {
            $raw = (Get-ItemProperty -LiteralPath (ConvertTo-ProviderPath $installDirFrom['key']) -ErrorAction Stop).($installDirFrom['value'])
            if ($raw) { $installDir = ([string]$raw).Trim().Trim('"').TrimEnd('\') }
        }
        catch { $null = $_ }
        if ($installDir -and -not (Test-SafePath $installDir)) {
            $refused.Add("install_dir $installDir")
            $installDir = $null
        }
    }

    Function Select-Path {
        param ($Facts)
        $existing = [System.Collections.Generic.List[string]]@()
        foreach ($fact in @(Get-List $Facts)) {
            $path = Expand-InstallDir -Value (Get-FactText -Fact $fact -Field 'path') -InstallDir $installDir
            if (-not $path) { continue }
            if (-not (Test-SafePath $path)) {
                if (Test-Path -LiteralPath $path) { $refused.Add($path) }
                continue
            }
            if ((Test-Path -LiteralPath $path) -and -not $existing.Contains($path)) { $existing.Add($path) }
        }
        return , $existing.ToArray()
    }

    Function Select-Registry {
        param ($Facts)
        $existing = [System.Collections.Generic.List[object]]@()
        foreach ($fact in @(Get-List $Facts)) {
            $target = Get-RegistryTarget $fact
            if (-not $target.key) { continue }
            if (-not $target.value -and -not (Test-SafeKey $target.key)) {
                if (Test-RegistryTarget $target) { $refused.Add($target.key) }
                continue
            }
            if (Test-RegistryTarget $target) { $existing.Add($target) }
        }
        return , $existing.ToArray()
    }

    Function Select-Service {
        param ($Facts)
        $existing = [System.Collections.Generic.List[object]]@()
        foreach ($fact in @(Get-List $Facts)) {
            $name = Get-FactText -Fact $fact -Field 'name'
            $svc = if ($name) { $Services[$name.ToLowerInvariant()] } else { $null }
            if ($svc -and -not ($existing | Where-Object { $_.name -eq $svc.name })) { $existing.Add($svc) }
        }
        return , $existing.ToArray()
    }

    $paths = Select-Path (Get-Field -Item $Item -Name 'paths')
    $leftoverPaths = Select-Path (Get-Field -Item $leftovers -Name 'paths')
    $roots = @($paths) + @($leftoverPaths) + @($(if ($installDir) { $installDir }))
    # Catalog paths that do not exist (yet) still mark processes running from them.
    foreach ($fact in @(Get-List (Get-Field -Item $Item -Name 'paths')) + @(Get-List (Get-Field -Item $leftovers -Name 'paths'))) {
        $path = Expand-InstallDir -Value (Get-FactText -Fact $fact -Field 'path') -InstallDir $installDir
        if ($path -and (Test-SafePath $path)) { $roots += $path }
    }

    # Processes: by name (catalog names may end in .exe), or by program path inside the agent's folders.
    # Per-instance products match by path only: another MSP's instance runs the same program names.
    $names = @(@(Get-List (Get-Field -Item $Item -Name 'processes')) | ForEach-Object {
            ((Get-FactText -Fact $_ -Field 'name') -replace '\.exe$', '').ToLowerInvariant()
        })
    $byName = -not (Get-Field -Item $Item -Name 'instance')
    $matchedProcesses = [System.Collections.Generic.List[object]]@()
    foreach ($proc in $Processes) {
        $procName = ([string]$proc.Name -replace '\.exe$', '').ToLowerInvariant()
        $exe = [string]$proc.ExecutablePath
        $inRoots = $exe -and ($roots | Where-Object { Test-Within -Path $exe -Root $_ })
        if ($inRoots -or ($byName -and $names -contains $procName)) {
            $matchedProcesses.Add(@{ pid = [int]$proc.ProcessId; name = [string]$proc.Name; exe = $exe })
        }
    }

    $entries = [System.Collections.Generic.List[object]]@()
    foreach ($rule in @(Get-List (Get-Field -Item $Item -Name 'uninstall_entries'))) {
        foreach ($entry in $UninstallEntries) {
            if ((Test-DisplayName -DisplayName $entry.display_name -Rule $rule) -and
                -not ($entries | Where-Object { $_.key -eq $entry.key })) {
                $entries.Add($entry)
            }
        }
    }

    $result = @{
        key = Get-Field -Item $Item -Name 'key'
        product = Get-Field -Item $Item -Name 'product'
        instance = Get-Field -Item $Item -Name 'instance'
        name = Get-Field -Item $Item -Name 'name'
        category = Get-Field -Item $Item -Name 'category'
        install_dir = $installDir
        services = Select-Service (Get-Field -Item $Item -Name 'services')
        processes = $matchedProcesses.ToArray()
        paths = $paths
        registry = Select-Registry (Get-Field -Item $Item -Name 'registry')
        uninstall_entries = $entries.ToArray()
        leftovers = @{
            paths = $leftoverPaths
            registry = Select-Registry (Get-Field -Item $leftovers -Name 'registry')
            services = Select-Service (Get-Field -Item $leftovers -Name 'services')
        }
        uninstaller = $null
        protection = $null
        refused = $refused.ToArray()
    }

    # The first applicable uninstaller, in catalog order.
    foreach ($step in @(Get-List (Get-Field -Item $Item -Name 'uninstall'))) {
        $timeout = Get-Field -Item $step -Name 'timeout'
        if ((Get-Field -Item $step -Name 'msi_from_uninstall_entry') -eq $true) {
            $codes = @($entries | Where-Object { $_.product_code } | ForEach-Object { $_.product_code } | Select-Object -Unique)
            if ($codes.Count -gt 0) {
                $result.uninstaller = @{
                    kind = 'msi'; product_codes = $codes; timeout = $timeout
                    msi_args = @(Get-List (Get-Field -Item $step -Name 'msi_args'))
                }
                break
            }
            continue
        }
        $command = Expand-Command -Command (Get-Field -Item $step -Name 'command') -InstallDir $installDir
        $whenExists = Expand-InstallDir -Value (Get-Field -Item $step -Name 'when_exists') -InstallDir $installDir
        $chdir = Expand-InstallDir -Value (Get-Field -Item $step -Name 'chdir') -InstallDir $installDir
        if ($null -eq $command -or -not $whenExists) { continue }
        if (Test-Path -LiteralPath $whenExists -PathType Leaf) {
            $result.uninstaller = @{ kind = 'command'; command = $command; chdir = $chdir; timeout = $timeout }
            break
        }
    }

    $protection = Get-Field -Item $Item -Name 'protection'
    if ($protection) {
        $command = Expand-Command -Command (Get-Field -Item $protection -Name 'command') -InstallDir $installDir
        $runnable = ($null -ne $command) -and (Test-Path -LiteralPath $command[0] -PathType Leaf)
        $result.protection = @{
            command = if ($runnable) { $command } else { $null }
            secret_var = Get-Field -Item $protection -Name 'secret_var'
        }
    }

    $result.found = [bool](
        $result.services.Count -or $result.processes.Count -or $result.paths.Count -or
        $result.registry.Count -or $result.uninstall_entries.Count -or $result.leftovers.paths.Count -or
        $result.leftovers.registry.Count -or $result.leftovers.services.Count)
    return $result
}

Function Test-ServiceDeletable {
    # A leftover service is deleted only when its program is gone or lies in one of the agent's folders:
    # generic names (a WinRing0 driver, say) may belong to another product on this machine.
    param ($Service, $Found)
    $image = [string]$Service.image_path
    if (-not $image) { return $true }
    $image = [Environment]::ExpandEnvironmentVariables($image) -replace '^\\\?\?\\', ''
    if ($image.StartsWith('"')) { $image = $image.Substring(1).Split('"')[0] }
    elseif ($image -match '^(.+?\.(exe|sys|dll))(\s|$)') { $image = $Matches[1] }
    if ($image -match '^(?i)(\\SystemRoot\\|System32\\)') {
        $image = Join-Path $systemRoot ($image -replace '^(?i)\\SystemRoot\\', '')
    }
    if (-not (Test-Path -LiteralPath $image)) { return $true }
    $roots = @($Found.paths) + @($Found.leftovers.paths) + @($(if ($Found.install_dir) { $Found.install_dir }))
    return [bool]($roots | Where-Object { Test-Within -Path $image -Root $_ })
}

Function Remove-Tree {
    # Deletes a folder without following junctions or symbolic links (Remove-Item -Recurse in Windows
    # PowerShell 5.1 can descend into them), after clearing read-only attributes.
    param ([string]$Path)
    $item = Get-Item -LiteralPath $Path -Force
    if (-not $item.PSIsContainer -or ($item.Attributes -band [IO.FileAttributes]::ReparsePoint)) {
        $item.Attributes = [IO.FileAttributes]::Normal
        if ($item.PSIsContainer) { [IO.Directory]::Delete($Path, $false) } else { [IO.File]::Delete($Path) }
        return
    }
    $stack = [System.Collections.Generic.Stack[IO.DirectoryInfo]]::new()
    $stack.Push([IO.DirectoryInfo]$Path)
    while ($stack.Count -gt 0) {
        $dir = $stack.Pop()
        foreach ($entry in $dir.EnumerateFileSystemInfos()) {
            if ($entry.Attributes -band [IO.FileAttributes]::ReadOnly) {
                $entry.Attributes = $entry.Attributes -band -bnot [IO.FileAttributes]::ReadOnly
            }
            if (($entry -is [IO.DirectoryInfo]) -and -not ($entry.Attributes -band [IO.FileAttributes]::ReparsePoint)) {
                $stack.Push($entry)
            }
        }
    }
    [IO.Directory]::Delete($Path, $true)
}

Function Remove-ItemFootprint {
    # Deletes what the uninstaller left. Returns what was (or, in check mode, would be) removed.
    param ($Found, [bool]$RemoveLeftovers)
    $removed = @{
        services = [System.Collections.Generic.List[string]]@()
        processes = [System.Collections.Generic.List[string]]@()
        paths = [System.Collections.Generic.List[string]]@()
        registry = [System.Collections.Generic.List[string]]@()
        refused = [System.Collections.Generic.List[string]]@()
        errors = [System.Collections.Generic.List[string]]@()
    }

    foreach ($svc in $Found.leftovers.services) {
        if (-not (Test-ServiceDeletable -Service $svc -Found $Found)) {
            $removed.refused.Add("service $($svc.name) (program $($svc.image_path) is outside the agent's folders)")
            continue
        }
        $removed.services.Add($svc.name)
        if ($checkMode) { continue }
        try {
            $controller = [System.ServiceProcess.ServiceController]::new($svc.name)
            if ($controller.Status -ne 'Stopped') {
                try {
                    $controller.Stop()
                    $controller.WaitForStatus('Stopped', [TimeSpan]::FromSeconds(30))
                }
                catch { $null = $_ }
            }
            if ($svc.pid -gt 0) { Stop-Process -Id $svc.pid -Force -ErrorAction SilentlyContinue }
            # sc.exe is the only tool that deletes a service on Windows PowerShell 5.1 (Remove-Service is 6+).
            $out = & "$systemRoot\System32\sc.exe" delete $svc.name 2>&1
            # 1060: does not exist (any more); 1072: already marked for deletion.
            if ($LASTEXITCODE -notin @(0, 1060, 1072)) {
                $removed.errors.Add("sc.exe delete $($svc.name): rc $LASTEXITCODE $out")
            }
        }
        catch { $removed.errors.Add("service $($svc.name): $($_.Exception.Message)") }
    }

    foreach ($proc in $Found.processes) {
        $removed.processes.Add($proc.name)
        if (-not $checkMode) { Stop-Process -Id $proc.pid -Force -ErrorAction SilentlyContinue }
    }
    if ($Found.processes.Count -and -not $checkMode) { Start-Sleep -Seconds 2 }

    if ($RemoveLeftovers) {
        foreach ($path in (@($Found.paths) + @($Found.leftovers.paths) | Select-Object -Unique)) {
            if (-not (Test-Path -LiteralPath $path)) { continue }
            $removed.paths.Add($path)
            if ($checkMode) { continue }
            try { Remove-Tree -Path $path }
            catch { $removed.errors.Add("$($path): $($_.Exception.Message)") }
        }
        foreach ($target in (@($Found.registry) + @($Found.leftovers.registry))) {
            $label = if ($target.value) { "$($target.key) [$($target.value)]" } else { $target.key }
            if ($removed.registry.Contains($label) -or -not (Test-RegistryTarget $target)) { continue }
            $removed.registry.Add($label)
            if ($checkMode) { continue }
            try {
                $providerPath = ConvertTo-ProviderPath $target.key
                if ($target.value) { Remove-ItemProperty -LiteralPath $providerPath -Name $target.value -Force }
                else { Remove-Item -LiteralPath $providerPath -Recurse -Force }
            }
            catch { $removed.errors.Add("$($label): $($_.Exception.Message)") }
        }
    }
    return $removed
}

# ---------------------------------------------------------------------------------------------------
$state = $module.Params.state
$services = Get-ServiceTable
$processes = Get-ProcessList
$uninstallEntries = Get-UninstallEntryList
$results = [System.Collections.Generic.List[object]]@()
$errors = [System.Collections.Generic.List[string]]@()
$changed = $false

foreach ($item in $module.Params.items) {
    if (-not (Get-Field -Item $item -Name 'key')) {
        $module.FailJson("every item needs a 'key' (built by offboard_agent_scope)")
    }
    $found = Get-ItemFootprint -Item $item -Services $services -Processes $processes -UninstallEntries $uninstallEntries
    if ($state -eq 'absent' -and $found.found) {
        $removed = Remove-ItemFootprint -Found $found -RemoveLeftovers $module.Params.remove_leftovers
        $found.removed = $removed
        foreach ($message in $removed.errors) { $errors.Add("$($found.key): $message") }
        if ($removed.services.Count -or $removed.processes.Count -or $removed.paths.Count -or $removed.registry.Count) {
            $changed = $true
        }
        if (-not $checkMode) {
            # The next item (and the caller's verify step) must see the host as it is now.
            $services = Get-ServiceTable
            $processes = Get-ProcessList
        }
    }
    $results.Add($found)
}

$module.Result.items = $results.ToArray()
$module.Result.changed = $changed
if ($errors.Count) {
    $module.FailJson("could not remove everything: $($errors -join '; ')")
}
$module.ExitJson()

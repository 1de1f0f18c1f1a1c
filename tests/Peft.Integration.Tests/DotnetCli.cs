using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using Xunit;
using Xunit.Abstractions;

namespace Peft.Integration.Tests;

/// <summary>Runs the dotnet CLI (or a built program) as a child process, as a user would from a shell.</summary>
internal sealed class DotnetCli
{
    private readonly ITestOutputHelper _output;

    public DotnetCli(ITestOutputHelper output) => _output = output;

    /// <summary>The folder that holds PeftDsl.sln, above this test assembly.</summary>
    public static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "PeftDsl.sln"))) return dir.FullName;
        throw new InvalidOperationException($"no PeftDsl.sln above {AppContext.BaseDirectory}");
    }

    /// <summary>The configuration this test assembly was built in (bin/&lt;configuration&gt;/net10.0).</summary>
    public static string Configuration => new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Parent!.Name;

    /// <summary>Runs <c>dotnet args</c> in <paramref name="directory"/>; fails the test on a non-zero exit or a timeout.</summary>
    public string Run(string directory, int timeoutSeconds, params string[] args)
    {
        var (exitCode, output) = RunAllowingFailure(directory, timeoutSeconds, args);
        Assert.True(exitCode == 0, $"dotnet {string.Join(' ', args)} failed with exit code {exitCode}:\n{Tail(output)}");
        return output;
    }

    /// <summary>Runs <c>dotnet args</c> in <paramref name="directory"/> and returns its exit code and output (stdout, then stderr).</summary>
    public (int ExitCode, string Output) RunAllowingFailure(string directory, int timeoutSeconds, params string[] args)
    {
        var info = new ProcessStartInfo(Host())
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args) info.ArgumentList.Add(arg);
        // The test host runs under `dotnet test`, whose MSBuild settings must not leak into a build of another project.
        foreach (var key in info.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase) || k.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase)).ToList())
            info.Environment.Remove(key);
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        info.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";

        var clock = Stopwatch.StartNew();
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeoutSeconds * 1000))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"dotnet {string.Join(' ', args)} did not finish within {timeoutSeconds} s");
        }
        process.WaitForExit();
        string output = stdout.Result + stderr.Result;
        _output.WriteLine($"dotnet {string.Join(' ', args)}: exit {process.ExitCode} after {clock.Elapsed.TotalSeconds:F0} s");
        return (process.ExitCode, output);
    }

    private static string Tail(string text) => text.Length <= 6000 ? text : "..." + text[^6000..];

    /// <summary>The <c>dotnet</c> host that runs this test.</summary>
    private static string Host()
    {
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { } host && File.Exists(host)) return host;
        if (Environment.ProcessPath is { } current && Path.GetFileNameWithoutExtension(current) == "dotnet") return current;
        return "dotnet";
    }
}

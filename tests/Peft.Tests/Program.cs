using System;
using System.Diagnostics;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using Peft.Tests.Distributed;
using Peft.Tests.Native;
using Peft.Tests.Reliability;

namespace Peft.Tests;

/// <summary>
/// The test assembly's entry point (instead of the one Microsoft.NET.Test.Sdk generates): the test runner never calls
/// it, and <c>dotnet exec Peft.Tests.dll child ...</c> runs the child processes that reliability tests kill, and the
/// ones that native-loading tests start together, and the ranks of the <c>mpirun</c> jobs of the distributed tests.
/// </summary>
public static class Program
{
    public static int Main(string[] args) =>
        args.Length > 1 && args[0] == "child"
            ? args[1].StartsWith("native-", StringComparison.Ordinal) && OperatingSystem.IsLinux() ? NativeChild.Run(args[1..])
            : args[1].StartsWith("mpi-", StringComparison.Ordinal) ? MpiChild.Run(args[1..])
            : SaveChild.Run(args[1..])
            : Fail("usage: Peft.Tests child <command> ...");

    private static int Fail(string message)
    {
        Console.Error.WriteLine(message);
        return 2;
    }
}

/// <summary>Starts and waits for the child processes that <see cref="Program.Main"/> runs.</summary>
internal static class ChildProcess
{
    /// <summary>The <c>dotnet</c> host that runs this test, so the child runs on the same runtime.</summary>
    internal static string DotnetHost()
    {
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { } host && File.Exists(host)) return host;
        if (Environment.ProcessPath is { } current && Path.GetFileNameWithoutExtension(current) == "dotnet") return current;
        return "dotnet";
    }

    /// <summary>
    /// Reads <paramref name="child"/>'s output to the end and waits for it to exit (killing it and what it started
    /// after 120 s), then disposes it: its exit code, output, and when it was seen to exit.
    /// </summary>
    internal static async Task<(int Code, string Stdout, string Stderr, DateTimeOffset Exited)> Finish(Process child)
    {
        using (child)
        {
            var stdout = child.StandardOutput.ReadToEndAsync();
            var stderr = child.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
            try
            {
                await child.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                child.Kill(entireProcessTree: true);
                throw;
            }
            var exited = DateTimeOffset.UtcNow;
            return (child.ExitCode, await stdout, await stderr, exited);
        }
    }
}

using System;
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

using System;
using System.Diagnostics;
using System.Globalization;

namespace Peft.Tests.Reliability;

/// <summary>What a child process of <see cref="SaveKillTests"/> does until it is killed.</summary>
internal static class SaveChild
{
    /// <summary>
    /// <c>save-and-die DIR POINT</c>: see below. <c>save-loop DIR FIRST</c>: saves version FIRST, FIRST + 1, ... of <see cref="SaveTarget"/> into DIR, printing
    /// <c>saved N</c> after each save returns, until killed (or after a minute, so no child outlives a crashed test).
    /// </summary>
    public static int Run(string[] args)
    {
        switch (args[0])
        {
            case "save-loop":
            {
                string dir = args[1];
                int version = int.Parse(args[2], CultureInfo.InvariantCulture);
                var model = new SaveTarget();
                var clock = Stopwatch.StartNew();
                while (clock.Elapsed < TimeSpan.FromMinutes(1))
                {
                    model.Stamp(version);
                    model.SaveAdapters(dir);
                    Console.Out.WriteLine($"saved {version}");
                    Console.Out.Flush();
                    version++;
                }
                return 0;
            }
            case "save-and-die":
            {
                // save-and-die DIR POINT: saves version 1 whole, then dies (SIGKILL) at POINT of saving version 2.
                string dir = args[1], point = args[2];
                var model = new SaveTarget();
                model.Stamp(1);
                model.SaveAdapters(dir);
                model.Stamp(2);
                Peft.Runtime.IO.SaveJournal.CommitPoint = reached =>
                {
                    if (reached != point) return;
                    Process.GetCurrentProcess().Kill();
                    System.Threading.Thread.Sleep(System.Threading.Timeout.Infinite);
                };
                model.SaveAdapters(dir);
                Console.Out.WriteLine("survived");
                return 0;
            }
            default:
                Console.Error.WriteLine($"unknown child command '{args[0]}'");
                return 2;
        }
    }
}

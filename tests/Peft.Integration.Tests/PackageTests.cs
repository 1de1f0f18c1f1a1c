using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.IO.Compression;
using System.Linq;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using Xunit;
using Xunit.Abstractions;

namespace Peft.Integration.Tests;

/// <summary>
/// <c>dotnet pack</c> makes one package, Peft, that a fresh application outside the repository can use alone: it
/// builds with the package's source generator running and runs a LoRA fine-tune, save and load.
/// </summary>
public sealed class PackageTests : IDisposable
{
    private readonly ITestOutputHelper _output;
    private readonly string _work = Path.Combine(Path.GetTempPath(), "peft-pack-" + Guid.NewGuid().ToString("N")[..12]);

    private readonly DotnetCli _cli;

    public PackageTests(ITestOutputHelper output)
    {
        _output = output;
        _cli = new DotnetCli(output);
        Directory.CreateDirectory(_work);
    }

    public void Dispose()
    {
        try { Directory.Delete(_work, recursive: true); }
        catch (IOException) { /* a leftover temp folder must not fail the test */ }
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void AFreshConsumerOfThePackedPackageBuildsWithGeneratorAndAnalyzersAndRunsALoRAFineTune()
    {
        var clock = Stopwatch.StartNew();
        string repo = DotnetCli.RepositoryRoot();
        var props = XDocument.Load(Path.Combine(repo, "Directory.Build.props"));
        string prefix = props.Descendants("VersionPrefix").Single().Value;
        string torchSharp = XDocument.Load(Path.Combine(repo, "Directory.Packages.props")).Descendants("PackageVersion")
            .Single(p => (string?)p.Attribute("Include") == "TorchSharp").Attribute("Version")!.Value;
        // A version no cache has seen, so the consumer gets exactly what was packed now.
        string suffix = "pack" + DateTime.UtcNow.ToString("yyyyMMddHHmmss") + Guid.NewGuid().ToString("N")[..6];
        string version = prefix + "-" + suffix;

        // 1. Pack a copy of the sources, so this test's build never touches the repository's bin/ and obj/ in use.
        string copy = Path.Combine(_work, "repo");
        CopySources(repo, copy);
        string feed = Path.Combine(_work, "feed");
        _cli.Run(copy, 240, "pack", Path.Combine("src", "Peft.Runtime", "Peft.Runtime.csproj"), "-c", "Release", "-o", feed,
            "--version-suffix", suffix, "--disable-build-servers", "-nodeReuse:false");
        _output.WriteLine($"packed in {clock.Elapsed.TotalSeconds:F0} s");
        CheckPackage(Path.Combine(feed, $"Peft.{version}.nupkg"), version, torchSharp);
        Assert.True(File.Exists(Path.Combine(feed, $"Peft.{version}.snupkg")), "no symbol package");
        using (var symbols = ZipFile.OpenRead(Path.Combine(feed, $"Peft.{version}.snupkg")))
            Assert.Equal(new[] { "lib/net10.0/Peft.Dsl.pdb", "lib/net10.0/Peft.Runtime.pdb" },
                symbols.Entries.Select(e => e.FullName).Where(n => n.EndsWith(".pdb", StringComparison.Ordinal)).OrderBy(n => n, StringComparer.Ordinal));

        // 2. A fresh consumer outside the repository that references only the package (and a libtorch backend).
        string consumer = Path.Combine(_work, "consumer");
        Directory.CreateDirectory(consumer);
        string template = Path.Combine(AppContext.BaseDirectory, "Consumer");
        File.WriteAllText(Path.Combine(consumer, "Consumer.csproj"),
            File.ReadAllText(Path.Combine(template, "Consumer.csproj.template")).Replace("$PEFT_VERSION$", version).Replace("$TORCHSHARP_VERSION$", torchSharp));
        File.Copy(Path.Combine(template, "Program.cs"), Path.Combine(consumer, "Program.cs"));
        // Nothing above the consumer may configure it (a temp folder usually has no Directory.*.props; make sure).
        File.WriteAllText(Path.Combine(consumer, "Directory.Build.props"), "<Project />");
        File.WriteAllText(Path.Combine(consumer, "Directory.Build.targets"), "<Project />");
        File.WriteAllText(Path.Combine(consumer, "Directory.Packages.props"), "<Project />");
        File.WriteAllText(Path.Combine(consumer, "global.json"), File.ReadAllText(Path.Combine(repo, "global.json")));
        // The feed beside the usual sources; restored packages go to a private folder (the test's Peft versions never
        // reach the machine's cache) that falls back to the machine's cache for TorchSharp.
        string cache = _cli.Run(consumer, 60, "nuget", "locals", "global-packages", "--list").Split(':', 2)[1].Trim();
        File.WriteAllText(Path.Combine(consumer, "NuGet.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <config>
                <add key="globalPackagesFolder" value="{Path.Combine(_work, "packages")}" />
              </config>
              <fallbackPackageFolders>
                <add key="machine" value="{cache}" />
              </fallbackPackageFolders>
              <packageSources>
                <add key="peft-local" value="{feed}" />
              </packageSources>
            </configuration>
            """);

        _cli.Run(consumer, 240, "build", "-c", "Release", "--disable-build-servers", "-nodeReuse:false");
        _output.WriteLine($"consumer built at {clock.Elapsed.TotalSeconds:F0} s");
        string generated = Path.Combine(consumer, "obj", "Release", "net10.0", "generated", "Peft.Generators", "Peft.Generators.PeftGenerator");
        Assert.True(File.Exists(Path.Combine(generated, "Classifier.Peft.g.cs")),
            $"the package's generator did not run: {(Directory.Exists(generated) ? string.Join(", ", Directory.GetFiles(generated).Select(Path.GetFileName)) : "no generated folder")}");
        Assert.Contains("PeftModelCore.Attach", File.ReadAllText(Path.Combine(generated, "Classifier.Peft.g.cs")));

        string adapter = Path.Combine(_work, "adapter");
        string output = _cli.Run(consumer, 180, "run", "--no-build", "-c", "Release", "--", adapter);
        _output.WriteLine(output);
        Assert.Contains("sites seen by the compiler: hidden:LoRA", output);
        Assert.Contains("trainable: 1028 of ", output); // LoRA A [8, 32] + B [64, 8], head 64·4 + 4
        Assert.Matches(new Regex(@"loss: first \d+\.\d+, last \d+\.\d+"), output);
        Assert.Contains("saved: adapter_config.json, adapter_model.safetensors", output);
        Assert.Contains("reloaded: differed before True, equal after True", output);
        Assert.Contains("consumer: ok", output);

        // 3. The package's analyzers run in the consumer's build: mistakes are build errors with their IDs.
        File.Copy(Path.Combine(template, "Broken.cs.txt"), Path.Combine(consumer, "Broken.cs"));
        var (exit, broken) = _cli.RunAllowingFailure(consumer, 240, "build", "-c", "Release", "--disable-build-servers", "-nodeReuse:false");
        Assert.NotEqual(0, exit);
        Assert.Contains("Broken.cs(10,", broken);
        Assert.Contains("error PEFT005", broken);
        Assert.Contains("error PEFT001", broken);
        _output.WriteLine($"total {clock.Elapsed.TotalSeconds:F0} s");
    }

    private static void CheckPackage(string nupkg, string version, string torchSharp)
    {
        Assert.True(File.Exists(nupkg), $"no package at {nupkg}");
        using var zip = ZipFile.OpenRead(nupkg);
        var entries = zip.Entries.Select(e => e.FullName).ToHashSet(StringComparer.Ordinal);
        var expected = new List<string>
        {
            "README.md",
            "lib/net10.0/Peft.Runtime.dll", "lib/net10.0/Peft.Runtime.xml",
            "lib/net10.0/Peft.Dsl.dll", "lib/net10.0/Peft.Dsl.xml",
            "analyzers/dotnet/cs/Peft.Generators.dll", "analyzers/dotnet/cs/Peft.CodeFixes.dll",
        };
        foreach (var entry in expected) Assert.True(entries.Contains(entry), $"{entry} is missing from the package ({string.Join(", ", entries.Order())})");
        Assert.DoesNotContain(entries, e => e.EndsWith(".pdb", StringComparison.Ordinal)); // symbols go to the .snupkg

        using var nuspecStream = zip.GetEntry("Peft.nuspec")!.Open();
        var nuspec = XDocument.Load(nuspecStream);
        XNamespace ns = nuspec.Root!.Name.Namespace;
        var metadata = nuspec.Root.Element(ns + "metadata")!;
        Assert.Equal("Peft", metadata.Element(ns + "id")!.Value);
        Assert.Equal(version, metadata.Element(ns + "version")!.Value);
        Assert.Equal("README.md", metadata.Element(ns + "readme")!.Value);
        Assert.Null(metadata.Element(ns + "icon"));
        var dependencies = metadata.Descendants(ns + "dependency").Select(d => $"{d.Attribute("id")!.Value} {d.Attribute("version")!.Value}").ToList();
        Assert.Equal(new[] { "TorchSharp " + torchSharp }, dependencies); // Peft.Dsl ships inside; the backend is the app's choice
    }

    /// <summary>src/ without build outputs, and the files at the root that configure its build.</summary>
    private static void CopySources(string repo, string target)
    {
        foreach (var file in new[] { "Directory.Build.props", "Directory.Packages.props", "global.json" })
            if (File.Exists(Path.Combine(repo, file))) { Directory.CreateDirectory(target); File.Copy(Path.Combine(repo, file), Path.Combine(target, file)); }
        var src = new DirectoryInfo(Path.Combine(repo, "src"));
        foreach (var file in src.EnumerateFiles("*", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(src.FullName, file.FullName);
            var parts = relative.Split(Path.DirectorySeparatorChar);
            if (parts.Any(p => p is "bin" or "obj")) continue;
            string destination = Path.Combine(target, "src", relative);
            Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
            file.CopyTo(destination);
        }
    }
}

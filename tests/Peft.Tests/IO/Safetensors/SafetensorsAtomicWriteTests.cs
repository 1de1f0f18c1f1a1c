using System;
using System.Collections.Generic;
using System.IO;
using Peft.Runtime.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.IO;

/// <summary>A failed write leaves the old file byte-identical and no temporary file behind.</summary>
public sealed class SafetensorsAtomicWriteTests : IDisposable
{
    private readonly TempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    [Fact]
    public void UnsupportedDTypeInTheMiddleLeavesTheOldFile()
    {
        using var scope = torch.NewDisposeScope();
        (string path, byte[] before) = ExistingFile();
        var tensors = new[]
        {
            SafetensorsTests.Pair("a", torch.ones(4)),
            SafetensorsTests.Pair("m.complex", torch.ones(4, dtype: ScalarType.ComplexFloat32)),
            SafetensorsTests.Pair("z", torch.ones(4)),
        };
        var ex = Assert.Throws<ArgumentException>(() => Safetensors.Write(path, tensors));
        Assert.Contains("'m.complex'", ex.Message);
        AssertUntouched(path, before);
    }

    [Fact]
    public void FailureWhileWritingDataLeavesTheOldFile()
    {
        using var scope = torch.NewDisposeScope();
        (string path, byte[] before) = ExistingFile();
        // A meta tensor has a dtype and shape, so the header is written, but no data: copying it to the CPU fails
        // after the temporary file already holds the header and the first tensor.
        var tensors = new Dictionary<string, Tensor>
        {
            ["a"] = torch.ones(1000),
            ["b.meta"] = torch.empty(new long[] { 1000 }, device: new Device("meta")),
            ["c"] = torch.ones(1000),
        };
        Assert.ThrowsAny<Exception>(() => Safetensors.Write(path, tensors));
        AssertUntouched(path, before);
    }

    [Fact]
    public void SuccessfulWriteReplacesTheFileAndLeavesNoTemporary()
    {
        using var scope = torch.NewDisposeScope();
        (string path, byte[] before) = ExistingFile();
        Safetensors.Write(path, new Dictionary<string, Tensor> { ["new"] = torch.full(3, 7f) });
        Assert.NotEqual(before, File.ReadAllBytes(path));
        using SafetensorsFile file = Safetensors.Read(path);
        Assert.Equal(new[] { "new" }, file.Tensors.Keys);
        Assert.Equal(new[] { path }, Directory.GetFiles(_folder.Path));
    }

    [Fact]
    public void WriteIntoAMissingFolderThrowsAndCreatesNothing()
    {
        using var scope = torch.NewDisposeScope();
        string path = Path.Combine(_folder.Path, "missing", "x.safetensors");
        Assert.Throws<DirectoryNotFoundException>(() => Safetensors.Write(path, new Dictionary<string, Tensor> { ["a"] = torch.ones(1) }));
        Assert.Empty(Directory.GetFileSystemEntries(_folder.Path));
    }

    private (string Path, byte[] Bytes) ExistingFile()
    {
        string path = _folder.File("adapter_model.safetensors");
        Safetensors.Write(path, new Dictionary<string, Tensor> { ["old"] = torch.arange(10, dtype: ScalarType.Float32) },
            new Dictionary<string, string> { ["format"] = "pt" });
        return (path, File.ReadAllBytes(path));
    }

    private void AssertUntouched(string path, byte[] before)
    {
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal(new[] { path }, Directory.GetFiles(_folder.Path));
        Assert.Empty(Directory.GetFiles(_folder.Path, "*.tmp-*"));
    }
}

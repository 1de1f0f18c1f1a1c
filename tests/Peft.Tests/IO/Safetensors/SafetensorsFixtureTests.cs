using System;
using System.IO;
using System.Linq;
using Peft.Runtime.IO;
using TorchSharp;
using Peft.Tests.SharedData;
using Xunit;
using static TorchSharp.torch;

namespace Peft.Tests.IO;

/// <summary>Files written by Hugging Face PEFT (through Python's safetensors) read, and write back byte for byte.</summary>
public class SafetensorsFixtureTests
{
    [SharedDataTheory(PeftFixtures.Folder)]
    [InlineData("distilbert-imdb-lora", 28, 12, new long[] { 768, 8 })]
    [InlineData("gpt2-seqcls-lora", 25, 12, new long[] { 2304, 8 })]
    public void PeftAdapterReads(string adapter, int tensorCount, int loraCount, long[] loraBShape)
    {
        string path = Path.Combine(PeftFixtures.Adapter(adapter), "adapter_model.safetensors");
        SafetensorsHeader header = Safetensors.ReadHeader(path);
        Assert.Equal(tensorCount, header.Entries.Count);
        Assert.Equal("pt", Assert.Single(header.Metadata, p => p.Key == "format").Value);
        Assert.All(header.Entries, e => Assert.Equal("F32", e.DType));
        Assert.All(header.Entries, e => Assert.StartsWith("base_model.model.", e.Name));

        var loraA = header.Entries.Where(e => e.Name.EndsWith(".lora_A.weight", StringComparison.Ordinal)).ToList();
        var loraB = header.Entries.Where(e => e.Name.EndsWith(".lora_B.weight", StringComparison.Ordinal)).ToList();
        Assert.Equal(loraCount, loraA.Count);
        Assert.Equal(loraCount, loraB.Count);
        Assert.All(loraA, e => Assert.Equal(new long[] { 8, 768 }, e.Shape));
        Assert.All(loraB, e => Assert.Equal(loraBShape, e.Shape));

        using SafetensorsFile file = Safetensors.Read(path);
        Assert.Equal(header.Entries.Select(e => e.Name), file.Tensors.Keys);
        byte[] raw = File.ReadAllBytes(path);
        foreach (SafetensorsEntry e in header.Entries)
        {
            Tensor t = file.Tensors[e.Name];
            Assert.Equal(ScalarType.Float32, t.dtype);
            Assert.Equal(e.Shape, t.shape);
            // The loaded values are the file's bytes, bit for bit.
            Assert.True(raw.AsSpan((int)(header.DataOffset + e.Begin), (int)e.ByteLength).SequenceEqual(t.bytes));
        }
        // A trained adapter: lora_B left its zero initialisation.
        Assert.True(file.Tensors[loraB[0].Name].abs().sum().item<float>() > 0);
    }

    [SharedDataTheory(PeftFixtures.Folder)]
    [InlineData("distilbert-imdb-lora")]
    [InlineData("gpt2-seqcls-lora")]
    public void RewritingAPeftAdapterGivesTheSameBytes(string adapter)
    {
        string path = Path.Combine(PeftFixtures.Adapter(adapter), "adapter_model.safetensors");
        using SafetensorsFile file = Safetensors.Read(path);
        // Shuffled input order: the writer sorts as safetensors does, so the bytes still match Python's.
        var shuffled = file.Tensors.Reverse().ToList();
        byte[] ours = Safetensors.Serialize(shuffled, file.Metadata);
        Assert.Equal(File.ReadAllBytes(path), ours);
    }

    /// <summary>
    /// Every file Python's safetensors wrote for PEFT (fixtures/peft, and fixtures/peft-written beside it where that
    /// exists) passes the reader's checks, the crate's exact tiling of the data section included.
    /// </summary>
    [SharedDataFact(PeftFixtures.Folder)]
    public void EveryPythonWrittenFixtureReads()
    {
        var folders = new[] { PeftFixtures.Directory, SharedFolder.Find("fixtures/peft-written") }.OfType<string>();
        string[] files = folders.SelectMany(f => Directory.EnumerateFiles(f, "*.safetensors", SearchOption.AllDirectories)).ToArray();
        Assert.True(files.Length >= 4, $"only {files.Length} fixture files");
        foreach (string path in files)
        {
            using SafetensorsFile file = Safetensors.Read(path);
            Assert.Equal(file.Header.Entries.Count, file.Tensors.Count);
        }
    }
}

using System;
using System.Collections.Generic;
using System.IO;
using Peft.Runtime.IO;
using Peft.Tests.SharedData;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Tests.EndToEnd;

/// <summary>The tiny model of tools/peft-interop with <c>[SaRA(2)]</c> on q, v and f: PEFT's <c>ShiraConfig(r=2)</c>.</summary>
[PeftModel]
public sealed partial class WrittenSaRA : Module<Tensor, Tensor>
{
    [SaRA(2)] private Module<Tensor, Tensor> q = Linear(16, 24);
    [SaRA(2)] private Module<Tensor, Tensor> v = Linear(16, 16);
    [SaRA(2)] private Module<Tensor, Tensor> f = Linear(16, 16);
    private Module<Tensor, Tensor> head = Linear(56, 5);

    public WrittenSaRA() : base(nameof(WrittenSaRA)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(cat(new[] { q.forward(x), v.forward(x), f.forward(x) }, -1));
}

/// <summary>
/// SaRA's file is PEFT's SHiRA: an adapter PEFT wrote (<c>peft_interop.py write</c>, case <c>shira</c>, PEFT's random mask)
/// loads onto <c>[SaRA(2)]</c> layers, whose own smallest-magnitude selection the file's indices replace, and gives
/// PEFT's outputs unmerged and merged; PeftDsl's own SaRA adapter reloads, and with <c>PEFT_INTEROP_OUT</c> set is written
/// for <c>peft_interop.py check</c>. The case is not in the shared fixtures PEFT wrote before SHiRA was checked, so it
/// runs where <c>fixtures/peft-written/shira</c> exists (<c>PEFT_SHARED_DIR</c> pointing at such a folder).
/// </summary>
public sealed class ShiraInteropTests
{
    private const string Folder = "fixtures/peft-written/shira";

    [SharedDataFact(Folder)]
    public void PeftsShiraFileGivesPeftsOutputsAndOursReloads()
    {
        using var scope = NewDisposeScope();
        string dir = SharedFolder.Require(Folder);
        var model = new WrittenSaRA();
        PeftWrittenTests.LoadBase(model, Path.Combine(dir, "base.safetensors"));
        model.LoadAdapters(dir);
        model.eval();
        using var reference = Safetensors.Read(Path.Combine(dir, "reference.safetensors"));
        var x = reference.Tensors["x"];
        using (no_grad())
        {
            TensorAssert.Close(reference.Tensors["y"], model.forward(x), 1e-5, 1e-5);
            model.MergeAdapters();
            TensorAssert.Close(reference.Tensors["y_merged"], model.forward(x), 1e-5, 1e-5);
            model.UnmergeAdapters();
        }

        // Ours: the smallest-magnitude selection on PEFT's base, our random values.
        string? interopRoot = Environment.GetEnvironmentVariable(PeftWrittenTests.InteropOutVariable);
        string caseDir = string.IsNullOrEmpty(interopRoot)
            ? Path.Combine(Path.GetTempPath(), "peftdsl-written-shira-" + Guid.NewGuid().ToString("N"))
            : Path.Combine(interopRoot, "shira");
        try
        {
            var ours = new WrittenSaRA();
            PeftWrittenTests.LoadBase(ours, Path.Combine(dir, "base.safetensors"));
            PeftWrittenTests.Randomise(ours, seed: 7);
            ours.eval();
            Tensor y;
            using (no_grad()) y = ours.forward(x);
            string adapterDir = Path.Combine(caseDir, "adapter");
            ours.SaveAdapters(adapterDir);
            PeftWrittenTests.WriteBaseAndReference(dir, caseDir, x, y);
            var again = new WrittenSaRA();
            PeftWrittenTests.LoadBase(again, Path.Combine(dir, "base.safetensors"));
            again.LoadAdapters(adapterDir);
            again.eval();
            using (no_grad()) TensorAssert.Equal(y, again.forward(x));
        }
        finally
        {
            if (string.IsNullOrEmpty(interopRoot) && Directory.Exists(caseDir)) Directory.Delete(caseDir, true);
        }
    }
}

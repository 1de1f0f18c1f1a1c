using System.Linq;
using Peft;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Tests.Reliability;

/// <summary>
/// A model whose save spans three adapter folders (LoRA <c>default</c> in the directory itself, Bone <c>bone</c> in
/// <c>bone/</c>, LoRA <c>other</c> in <c>other/</c>) and six files: a save killed between any two of them is
/// what the journal must make whole.
/// </summary>
[PeftModel]
public sealed partial class SaveTarget : Module<Tensor, Tensor>
{
    [LoRA(8, Alpha = 16)]
    [LoRA(4, Alpha = 4, Name = "other")]
    private Module<Tensor, Tensor> q = Linear(128, 128);

    [Bone(8, Name = "bone")]
    private Module<Tensor, Tensor> v = Linear(128, 128);

    [Trainable]
    private Module<Tensor, Tensor> head = Linear(128, 16);

    public SaveTarget() : base(nameof(SaveTarget)) => RegisterComponents();

    public override Tensor forward(Tensor x) => head.forward(q.forward(x) + v.forward(x));

    /// <summary>Sets every adapter and head tensor to <paramref name="version"/>, so a file read back tells which save wrote it.</summary>
    public void Stamp(int version)
    {
        using var _ = no_grad();
        foreach (var (_, tensor) in SavedTensors()) tensor.fill_(version);
    }

    /// <summary>The tensors a save writes: every adapter's parameters and the [Trainable] head.</summary>
    public System.Collections.Generic.IEnumerable<(string Name, Tensor Tensor)> SavedTensors() =>
        named_parameters().Where(p => p.name.Contains("lora_") || p.name.Contains("miss_") || p.name.StartsWith("head.")).Select(p => (p.name, (Tensor)p.parameter));
}

using Peft;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Samples.Merging;

/// <summary>
/// A small MLP over one-hot digits a, b and a task flag (add, sub, mul), predicting a digit. Two named LoRA adapters on
/// every layer, one per fine-tuning task, and declared combinations of them: the classic ones and those from the
/// literature (Core Space TIES / TSV / Iso-C / Iso-CTS, WIDEN, LoRA-LEGO).
/// </summary>
[PeftModel]
[LoRA(8, Alpha = 16, Name = "sub", Targets = new[] { nameof(fc1), nameof(fc2), nameof(output) })]
[LoRA(8, Alpha = 16, Name = "mul", Targets = new[] { nameof(fc1), nameof(fc2), nameof(output) })]
[MergeWith("sub", "mul", Weights = new[] { 1.0, 1.0 }, Name = "sum")]
[MergeWith("sub", "mul", Method = MergeMethod.Ties, Weights = new[] { 1.0, 1.0 }, Density = 0.5, Name = "ties")]
[MergeWith("sub", "mul", Method = MergeMethod.Ties, Density = 0.5, Space = MergeSpace.Core, Name = "ties_core")]
[MergeWith("sub", "mul", Method = MergeMethod.Tsv, Space = MergeSpace.Core, Name = "tsv_core")]
[MergeWith("sub", "mul", Method = MergeMethod.IsoC, Space = MergeSpace.Core, Name = "isoc_core")]
[MergeWith("sub", "mul", Method = MergeMethod.IsoCts, Space = MergeSpace.Core, Name = "isocts_core")]
[MergeWith("sub", "mul", Method = MergeMethod.Widen, Name = "widen")]
[MergeWith("sub", "mul", Method = MergeMethod.LoraLego, Rank = 8, Seed = 1, Name = "lego")]
public sealed partial class DigitNet : Module<Tensor, Tensor>
{
    /// <summary>Input width: one-hot a (10), one-hot b (10), one-hot task (3).</summary>
    public const int Inputs = 23;

    private Module<Tensor, Tensor> fc1 = Linear(Inputs, 64);
    private Module<Tensor, Tensor> fc2 = Linear(64, 64);
    private Module<Tensor, Tensor> output = Linear(64, 10);

    public DigitNet() : base(nameof(DigitNet)) => RegisterComponents();

    public override Tensor forward(Tensor x) => output.forward(functional.relu(fc2.forward(functional.relu(fc1.forward(x)))));
}

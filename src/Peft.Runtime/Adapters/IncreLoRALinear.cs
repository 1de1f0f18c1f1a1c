using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json.Nodes;
using Peft.Runtime.IO;
using Peft.Runtime.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Adapters
{
    /// <summary>
    /// IncreLoRA on a <c>Linear</c> layer: AdaLoRA's triplet form over the first <see cref="Rank"/> of
    /// <see cref="IncreLoRAOptions.MaxRank"/> preallocated ranks, y = xWᵀ + b + (drop(x)·(P ⊙ Λ)[:r]ᵀ)·Q[:, :r]ᵀ ·
    /// α / (ranknum + 1e-5), with P = <c>lora_A.&lt;adapter&gt;</c> [R, in], Λ = <c>lora_E.&lt;adapter&gt;</c> [R, 1],
    /// Q = <c>lora_B.&lt;adapter&gt;</c> [out, R], R = MaxRank. Λ starts at 0, P and Q at N(0, 0.02²).
    /// </summary>
    /// <remarks>
    /// As in the reference implementation, ranknum starts at InitRank and grows by the ranks a layer gains, so growing
    /// rescales its existing ranks. Ranks past r take no part in the forward (no gradient, so the optimizer's state of
    /// those rows stays zero until they are unmasked). The file is a plain LoRA: A = (P ⊙ Λ)[:r], B = Q[:, :r], rank r and
    /// alpha α·r / (ranknum + 1e-5), so alpha / r is the layer's scaling.
    /// </remarks>
    public sealed class IncreLoRALinear : AdapterLayerBase<IncreLoRAOptions>, IRankAllocatingLayer, IFileTensorLayout
    {
        private readonly AdapterParameterDict lora_A = new();
        private readonly AdapterParameterDict lora_E = new();
        private readonly AdapterParameterDict lora_B = new();
        private readonly Dictionary<string, State> _state = new(StringComparer.Ordinal);

        /// <summary>Per adapter: the ranks in use, ranknum and the module importance EMAs.</summary>
        private sealed class State
        {
            public int Rank;
            public double Ranknum;
            public double Sensitivity;
            public double Uncertainty;
        }

        /// <summary>Wraps <paramref name="baseLayer"/> and adds the first adapter.</summary>
        public IncreLoRALinear(string site, Linear baseLayer, string adapter, IncreLoRAOptions options) : base(site, baseLayer)
        {
            RegisterAdapterDict(nameof(lora_A), lora_A);
            RegisterAdapterDict(nameof(lora_E), lora_E);
            RegisterAdapterDict(nameof(lora_B), lora_B);
            AddAdapter(adapter, options);
        }

        /// <inheritdoc />
        public override string PeftType => "LORA";

        /// <inheritdoc />
        public IRankAllocator Allocator => IncreLoRA.Allocator;

        /// <summary>P ([MaxRank, in]).</summary>
        public Parameter LoraA(string adapter) => lora_A[adapter];

        /// <summary>Λ ([MaxRank, 1]).</summary>
        public Parameter LoraE(string adapter) => lora_E[adapter];

        /// <summary>Q ([out, MaxRank]).</summary>
        public Parameter LoraB(string adapter) => lora_B[adapter];

        /// <summary>The ranks in use (the first r of MaxRank).</summary>
        public int Rank(string adapter)
        {
            RequireAdapter(adapter);
            return _state[adapter].Rank;
        }

        /// <summary>ranknum: InitRank plus every rank added since (from a file: α / its scaling − 1e-5).</summary>
        public double Ranknum(string adapter)
        {
            RequireAdapter(adapter);
            return _state[adapter].Ranknum;
        }

        /// <summary>The smoothed module sensitivity Ī and uncertainty Ū.</summary>
        public (double Sensitivity, double Uncertainty) Importance(string adapter)
        {
            RequireAdapter(adapter);
            return (_state[adapter].Sensitivity, _state[adapter].Uncertainty);
        }

        /// <summary>α / (ranknum + 1e-5).</summary>
        public double Scaling(string adapter) => OptionsOf(adapter).Alpha / (_state[adapter].Ranknum + AdaLoRALinear.RankEpsilon);

        /// <summary>Adds a named adapter; its options are checked first.</summary>
        public void AddAdapter(string adapter, IncreLoRAOptions options)
        {
            IncreLoRA.Validate(Site, options);
            var (a, e, b) = AdaLoRALinear.NewTriplets(BaseWeight, options.MaxRank, InFeatures, OutFeatures);
            RegisterAdapter(adapter, options);
            _state[adapter] = new State { Rank = options.InitRank, Ranknum = options.InitRank };
            lora_A.Add(adapter, a);
            lora_E.Add(adapter, e);
            lora_B.Add(adapter, b);
        }

        /// <summary>(P ⊙ Λ)[:r] and Q[:, :r]: the ranks in use as a LoRA's A and B.</summary>
        private (Tensor A, Tensor B) Active(string adapter)
        {
            int r = _state[adapter].Rank;
            return (LoraA(adapter).narrow(0, 0, r).mul(LoraE(adapter).narrow(0, 0, r)), LoraB(adapter).narrow(1, 0, r));
        }

        /// <inheritdoc />
        protected override Tensor ForwardActive(Tensor input)
        {
            Tensor? result = null;
            foreach (var adapter in UnmergedActiveAdapters)
            {
                double dropout = training ? OptionsOf(adapter).Dropout : 0;
                var (a, b) = Active(adapter);
                result = result is null
                    ? LoRAFunction.Linear(input, BaseWeight, BaseBias, a, b, Scaling(adapter), dropout)
                    : LoRAFunction.AddTo(result, input, a, b, Scaling(adapter), dropout);
            }
            return result ?? BaseLayer.forward(input);
        }

        /// <summary>Q[:, :r]·(P ⊙ Λ)[:r]·α / (ranknum + 1e-5).</summary>
        public override Tensor DeltaWeight(string adapter)
        {
            RequireAdapter(adapter);
            var (a, b) = Active(adapter);
            return matmul(b, a).mul(Scaling(adapter));
        }

        /// <summary>The adapter as PEFT's LoRA sees it: rank r, alpha α·r / (ranknum + 1e-5), its dropout.</summary>
        public override AdapterSettings Settings(string adapter)
        {
            var options = Options(adapter);
            int r = _state[adapter].Rank;
            return new LoRAOptions { Rank = r, Alpha = Scaling(adapter) * r, Dropout = options.Dropout };
        }

        /// <summary>A plain LoRA (no DoRA) of rank 1 to MaxRank.</summary>
        public override void ValidateSettings(string adapter, AdapterSettings settings)
        {
            var options = Options(adapter);
            if (settings is not LoRAOptions lora || lora.UseDora)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' is an IncreLoRA adapter, saved as a plain LoRA; the file describes {LoRALinear.Describe(settings)}");
            if (lora.Rank < 1 || lora.Rank > options.MaxRank)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' holds at most MaxRank {options.MaxRank} ranks; the file has rank {lora.Rank}");
            if (LoRAInitialization.ChangesBaseWeight(lora.Init))
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' is an IncreLoRA adapter; the file's LoRA was initialised with {lora.Init}, which changes the base weight");
        }

        /// <summary>The file's rank becomes the ranks in use, and ranknum such that α / (ranknum + 1e-5) is the file's scaling.</summary>
        public override void ApplySettings(string adapter, AdapterSettings settings)
        {
            ValidateSettings(adapter, settings);
            var lora = (LoRAOptions)settings;
            var options = Options(adapter);
            SetOptions(adapter, options with { Dropout = lora.Dropout });
            var state = _state[adapter];
            state.Rank = lora.Rank;
            state.Ranknum = options.Alpha / lora.Scaling - AdaLoRALinear.RankEpsilon;
        }

        // ---- allocation ------------------------------------------------------------------------------------------------

        /// <summary>
        /// One EMA step of the module's importance: I = mean of |p ⊙ ∇p| over the entries of P, Λ and Q in use (AdaLoRA's
        /// sensitivity, averaged per layer), Ī ← β₁·Ī + (1 − β₁)·I, Ū ← β₂·Ū + (1 − β₂)·|I − Ī|.
        /// </summary>
        internal void UpdateImportance(string adapter)
        {
            var options = OptionsOf(adapter);
            var state = _state[adapter];
            int r = state.Rank;
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            Tensor? sum = null; // summed on the device, read once: one synchronisation per layer and step
            long count = 0;
            foreach (var (p, dim) in new[] { (LoraA(adapter), 0L), (LoraE(adapter), 0L), (LoraB(adapter), 1L) })
            {
                var used = p.narrow(dim, 0, r);
                count += used.numel();
                if (p.grad is not { } grad) continue;
                var part = used.mul(grad.narrow(dim, 0, r)).abs().sum().to(ScalarType.Float64);
                sum = sum is null ? part : sum.add(part);
            }
            double ipt = (sum?.item<double>() ?? 0) / count;
            state.Sensitivity = options.Beta1 * state.Sensitivity + (1 - options.Beta1) * ipt;
            state.Uncertainty = options.Beta2 * state.Uncertainty + (1 - options.Beta2) * Math.Abs(ipt - state.Sensitivity);
        }

        /// <summary>Unmasks <paramref name="add"/> more ranks (Λ = 0 there, so the output moves only by the new ranknum).</summary>
        internal void Grow(string adapter, int add)
        {
            var state = _state[adapter];
            using (no_grad()) LoraE(adapter).narrow(0, state.Rank, add).zero_();
            state.Rank += add;
            state.Ranknum += add;
        }

        /// <summary>|‖P_i‖² − 1| and |‖Q_:i‖² − 1| summed over the ranks in use (each a rank-1 chunk: ‖ppᵀ − I‖_F), and their count.</summary>
        internal (Tensor Sum, int Count) ChunkGaps(string adapter)
        {
            int r = _state[adapter].Rank;
            var p = LoraA(adapter).narrow(0, 0, r).square().sum(new long[] { 1 }).sub(1).abs().sum();
            var q = LoraB(adapter).narrow(1, 0, r).square().sum(new long[] { 0 }).sub(1).abs().sum();
            return (p.add(q), 2 * r);
        }

        // ---- files -------------------------------------------------------------------------------------------------

        /// <inheritdoc />
        public (IReadOnlyList<(string Name, Tensor Tensor)> Tensors, AdapterSettings Settings) ForFile(string adapter)
        {
            RequireAdapter(adapter);
            using var scope = NewDisposeScope();
            var (a, b) = Active(adapter);
            var tensors = new List<(string, Tensor)>
            {
                ($"lora_A.{adapter}.weight", a.detach().clone().MoveToOuterDisposeScope()),
                ($"lora_B.{adapter}.weight", b.detach().clone().MoveToOuterDisposeScope()),
            };
            return (tensors, Settings(adapter));
        }

        /// <inheritdoc />
        public IReadOnlyList<(string Name, long[] Shape)> FileShapes(string adapter, AdapterSettings fileSettings)
        {
            long r = ((LoRAOptions)fileSettings).Rank;
            return new List<(string, long[])> { ($"lora_A.{adapter}.weight", new[] { r, InFeatures }), ($"lora_B.{adapter}.weight", new[] { OutFeatures, r }) };
        }

        /// <summary>The file's A and B as the first r ranks with Λ = 1; the other ranks zero.</summary>
        public IReadOnlyList<(Tensor Target, Tensor Source)> FromFile(string adapter, AdapterSettings fileSettings, IReadOnlyDictionary<string, Tensor> fileTensors)
        {
            int r = ((LoRAOptions)fileSettings).Rank;
            var a = LoraA(adapter);
            var e = LoraE(adapter);
            var b = LoraB(adapter);
            var fullA = zeros(a.shape, dtype: a.dtype, device: a.device);
            fullA.narrow(0, 0, r).copy_(fileTensors[$"lora_A.{adapter}.weight"]);
            var fullE = zeros(e.shape, dtype: e.dtype, device: e.device);
            fullE.narrow(0, 0, r).fill_(1);
            var fullB = zeros(b.shape, dtype: b.dtype, device: b.device);
            fullB.narrow(1, 0, r).copy_(fileTensors[$"lora_B.{adapter}.weight"]);
            return new List<(Tensor, Tensor)> { (a, fullA), (e, fullE), (b, fullB) };
        }

        /// <inheritdoc />
        protected override void RemoveAdapterParameters(string adapter)
        {
            base.RemoveAdapterParameters(adapter);
            _state.Remove(adapter);
        }
    }

    /// <summary>The entry point generated code calls for <c>[IncreLoRA]</c>, and IncreLoRA's growth.</summary>
    public static class IncreLoRA
    {
        /// <summary>Wraps <paramref name="layer"/> in an <see cref="IncreLoRALinear"/>, or adds the adapter to it if it already is one.</summary>
        public static nn.Module<Tensor, Tensor> Wrap(nn.Module<Tensor, Tensor>? layer, string site, string adapter, IncreLoRAOptions options) =>
            AdapterWrap.Linear<IncreLoRALinear>(layer, site, "IncreLoRA", existing => existing.AddAdapter(adapter, options), linear => new IncreLoRALinear(site, linear, adapter, options));

        /// <summary>The allocator every IncreLoRA layer returns.</summary>
        public static IRankAllocator Allocator { get; } = new RankAllocator();

        internal static void Validate(string site, IncreLoRAOptions options)
        {
            AdapterChecks.RankAtLeastOne(site, "IncreLoRA target", options.TargetRank);
            if (!(options.InitRank >= 1 && options.InitRank <= options.TargetRank && options.TargetRank <= options.MaxRank))
                throw new ArgumentException(PeftMessages.Format(PeftMessages.IncreLoRARanks, site, options.InitRank, options.TargetRank, options.MaxRank));
            AdapterChecks.Dropout(site, options.Dropout);
            AdapterChecks.Betas(site, "IncreLoRA", options.Beta1, options.Beta2);
            foreach (var (name, value) in new[] { ("Interval", options.Interval), ("TopH", options.TopH), ("RankIncrement", options.RankIncrement) })
                if (value < 1)
                    throw new ArgumentException(PeftMessages.Format(PeftMessages.IntervalTooSmall, site, "IncreLoRA", name, value));
            if (options.Warmup < 0)
                throw new ArgumentException(PeftMessages.Format(PeftMessages.NegativeOption, site, "IncreLoRA", "Warmup", options.Warmup));
            if (!(options.OrthRegWeight >= 0))
                throw new ArgumentException(PeftMessages.Format(PeftMessages.NegativeOption, site, "IncreLoRA", "OrthRegWeight", options.OrthRegWeight));
        }

        /// <summary>Whether step <paramref name="step"/> is a growth step: at Warmup and every Interval steps after it.</summary>
        public static bool GrowsAt(IncreLoRAOptions options, int step) => step >= options.Warmup && (step - options.Warmup) % options.Interval == 0;

        /// <summary>
        /// One growth step over the adapter's layers, given each layer's rank and score: while the adapter holds fewer than
        /// targetRank·L ranks, the TopH highest-scoring layers below MaxRank (ties: the first layer) gain RankIncrement ranks
        /// each (fewer where MaxRank or the budget stops them). Returns the ranks each layer gains.
        /// </summary>
        public static int[] Growth(IncreLoRAOptions options, IReadOnlyList<int> ranks, IReadOnlyList<double> scores)
        {
            var add = new int[ranks.Count];
            int remaining = options.TargetRank * ranks.Count - ranks.Sum();
            var order = Enumerable.Range(0, ranks.Count).Where(i => ranks[i] < options.MaxRank)
                .OrderByDescending(i => scores[i]).ThenBy(i => i).Take(options.TopH);
            foreach (int i in order)
            {
                if (remaining <= 0) break;
                add[i] = Math.Min(Math.Min(options.RankIncrement, options.MaxRank - ranks[i]), remaining);
                remaining -= add[i];
            }
            return add;
        }

        private sealed class RankAllocator : IRankAllocator
        {
            /// <summary>While the budget is not reached: update every layer's importance, and at a growth step grow the top layers.</summary>
            public void UpdateAndAllocate(IReadOnlyList<(string Path, IAdapterLayer Layer)> sites, string adapter, int step)
            {
                var layers = RankAllocation.LayersOf<IncreLoRALinear>(sites, adapter);
                if (layers.Count == 0) return;
                var options = layers[0].Options(adapter);
                var ranks = layers.Select(l => l.Rank(adapter)).ToList();
                if (ranks.Sum() >= options.TargetRank * layers.Count) return; // done: no more scoring, as the reference removes its hooks
                foreach (var layer in layers) layer.UpdateImportance(adapter);
                if (!GrowsAt(options, step)) return;
                var scores = layers.Select(l => l.Importance(adapter)).Select(i => i.Sensitivity * i.Uncertainty).ToList();
                var add = Growth(options, ranks, scores);
                for (int i = 0; i < layers.Count; i++)
                    if (add[i] > 0) layers[i].Grow(adapter, add[i]);
            }

            /// <summary>OrthRegWeight · mean over every rank-1 chunk in use (P's rows, Q's columns) of ‖ppᵀ − I‖_F = |‖p‖² − 1|.</summary>
            public Tensor? Regularization(IReadOnlyList<(string Path, IAdapterLayer Layer)> sites, string adapter)
            {
                var layers = RankAllocation.LayersOf<IncreLoRALinear>(sites, adapter);
                if (layers.Count == 0) return null;
                double weight = layers[0].Options(adapter).OrthRegWeight;
                if (weight == 0) return null;
                Tensor? sum = null;
                int count = 0;
                foreach (var layer in layers)
                {
                    var (s, n) = layer.ChunkGaps(adapter);
                    sum = sum is null ? s : sum.add(s);
                    count += n;
                }
                return sum!.mul(weight / count);
            }
        }
    }

    /// <summary>
    /// The options of one IncreLoRA adapter, as <c>[IncreLoRA]</c> declares them (the same defaults). Saved as PEFT's
    /// LoRA: its config holds LoRA's shared fields; <c>r</c> and <c>lora_alpha</c> per layer come from the layer's state
    /// (<see cref="IncreLoRALinear.Settings"/>); <see cref="PerLayerFields"/> gives the starting values.
    /// </summary>
    public sealed record IncreLoRAOptions : AdapterSettings
    {
        /// <summary>The average rank per layer the budget grows to.</summary>
        public int TargetRank { get; init; } = 8;

        /// <summary>The rank every layer starts at.</summary>
        public int InitRank { get; init; } = 1;

        /// <summary>The most ranks one layer may grow to (preallocated).</summary>
        public int MaxRank { get; init; } = 16;

        /// <summary>Ranks a selected layer gains per growth.</summary>
        public int RankIncrement { get; init; } = 1;

        /// <summary>Layers selected per growth.</summary>
        public int TopH { get; init; } = 4;

        /// <summary>Steps before the first growth.</summary>
        public int Warmup { get; init; } = 50;

        /// <summary>Steps between growths.</summary>
        public int Interval { get; init; } = 50;

        /// <summary>The scaling numerator α.</summary>
        public double Alpha { get; init; } = 8;

        /// <summary>Dropout probability on the adapter input.</summary>
        public double Dropout { get; init; }

        /// <summary>Sensitivity EMA smoothing.</summary>
        public double Beta1 { get; init; } = 0.85;

        /// <summary>Uncertainty EMA smoothing.</summary>
        public double Beta2 { get; init; } = 0.85;

        /// <summary>Weight of the chunk-wise orthogonal regulariser.</summary>
        public double OrthRegWeight { get; init; } = 0.1;

        /// <inheritdoc />
        public override string PeftType => "LORA";

        /// <inheritdoc />
        public override IReadOnlyDictionary<string, double> PerLayerFields => new Dictionary<string, double>
        {
            ["r"] = InitRank,
            ["lora_alpha"] = Alpha,
        };

        /// <inheritdoc />
        public override void WriteSharedFields(JsonObject config) => new LoRAOptions { Dropout = Dropout }.WriteSharedFields(config);
    }
}

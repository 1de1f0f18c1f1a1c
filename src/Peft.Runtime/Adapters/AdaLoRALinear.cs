using System;
using System.Collections.Generic;
using System.IO;
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
    /// AdaLoRA on a <c>Linear</c> layer: y = xWᵀ + b + (drop(x)·(P ⊙ Λ)ᵀ)·Qᵀ · α / (r₀ + 1e-5), with PEFT's parameter
    /// dicts <c>lora_A.&lt;adapter&gt;</c> = P [r₀, in], <c>lora_E.&lt;adapter&gt;</c> = Λ [r₀, 1] and
    /// <c>lora_B.&lt;adapter&gt;</c> = Q [out, r₀], r₀ = <see cref="AdaLoRAOptions.InitRank"/>. Λ starts at 0 and P, Q
    /// at N(0, 0.02²), so the layer starts equal to its base.
    /// </summary>
    /// <remarks>
    /// PEFT divides by <c>ranknum</c>, a frozen scalar set to r₀ that never changes, even after ranks are masked or a
    /// sliced file is loaded: the scaling stays α / (r₀ + 1e-5). The ranks are not removed when masked; their Λ entries
    /// are held at zero (PEFT does the same while training), so the optimizer's state stays in place. A save slices
    /// each tensor to the ranks kept (<see cref="IFileTensorLayout"/>); a load puts the file's ranks back at the kept
    /// positions and zeroes the others. The per-step allocation is <see cref="AdaLoRA.Allocator"/>.
    /// </remarks>
    public sealed class AdaLoRALinear : AdapterLayerBase<AdaLoRAOptions>, IRankAllocatingLayer, IFileTensorLayout
    {
        private readonly AdapterParameterDict lora_A = new();
        private readonly AdapterParameterDict lora_E = new();
        private readonly AdapterParameterDict lora_B = new();
        private readonly Dictionary<string, Importance> _importance = new(StringComparer.Ordinal);

        /// <summary>PEFT's ε in α / (ranknum + ε).</summary>
        public const double RankEpsilon = 1e-5;

        /// <summary>The standard deviation P and Q start with.</summary>
        public const double InitStd = 0.02;

        /// <summary>Wraps <paramref name="baseLayer"/> and adds the first adapter.</summary>
        public AdaLoRALinear(string site, Linear baseLayer, string adapter, AdaLoRAOptions options) : base(site, baseLayer)
        {
            RegisterAdapterDict(nameof(lora_A), lora_A);
            RegisterAdapterDict(nameof(lora_E), lora_E);
            RegisterAdapterDict(nameof(lora_B), lora_B);
            AddAdapter(adapter, options);
        }

        /// <inheritdoc />
        public override string PeftType => "ADALORA";

        /// <inheritdoc />
        public IRankAllocator Allocator => AdaLoRA.Allocator;

        /// <summary>P, the right singular vectors ([r₀, in]; PEFT's <c>lora_A</c>).</summary>
        public Parameter LoraA(string adapter) => lora_A[adapter];

        /// <summary>Λ, the singular values ([r₀, 1]; PEFT's <c>lora_E</c>).</summary>
        public Parameter LoraE(string adapter) => lora_E[adapter];

        /// <summary>Q, the left singular vectors ([out, r₀]; PEFT's <c>lora_B</c>).</summary>
        public Parameter LoraB(string adapter) => lora_B[adapter];

        /// <summary>Which of the r₀ ranks are kept: the last mask (<see cref="AdaLoRAOptions.RankPattern"/>), all before the first.</summary>
        public bool[] KeptRanks(string adapter) => Options(adapter).KeptRanks();

        /// <summary>Adds a named adapter; its options are checked first.</summary>
        public void AddAdapter(string adapter, AdaLoRAOptions options)
        {
            AdaLoRA.Validate(Site, options);
            var (a, e, b) = NewTriplets(BaseWeight, options.InitRank, InFeatures, OutFeatures);
            RegisterAdapter(adapter, options with { RankPattern = null });
            lora_A.Add(adapter, a);
            lora_E.Add(adapter, e);
            lora_B.Add(adapter, b);
        }

        /// <summary>
        /// <paramref name="rank"/> fresh triplets, as PEFT's AdaLoRA starts them (IncreLoRA too): P [rank, in] and
        /// Q [out, rank] from N(0, 0.02²), Λ [rank, 1] = 0, on the base weight's dtype and device.
        /// </summary>
        internal static (Parameter P, Parameter Lambda, Parameter Q) NewTriplets(Tensor weight, int rank, long inFeatures, long outFeatures)
        {
            var a = new Parameter(empty(rank, inFeatures, dtype: weight.dtype, device: weight.device));
            var e = new Parameter(zeros(rank, 1, dtype: weight.dtype, device: weight.device));
            var b = new Parameter(empty(outFeatures, rank, dtype: weight.dtype, device: weight.device));
            using (no_grad())
            {
                nn.init.normal_(a, 0, InitStd);
                nn.init.normal_(b, 0, InitStd);
            }
            return (a, e, b);
        }

        /// <summary>P ⊙ Λ, Λ folded into P ([r₀, in]), so the layer is a LoRA of rank r₀ with A = P ⊙ Λ and B = Q.</summary>
        private Tensor FoldedA(string adapter) => LoraA(adapter).mul(LoraE(adapter));

        /// <summary>
        /// The base output plus each active, unmerged adapter, each through the fused LoRA function with A = P ⊙ Λ
        /// (one [r₀, in] product, whose gradient autograd splits into P's and Λ's).
        /// </summary>
        protected override Tensor ForwardActive(Tensor input)
        {
            Tensor? result = null;
            foreach (var adapter in UnmergedActiveAdapters)
            {
                var options = OptionsOf(adapter);
                double dropout = training ? options.Dropout : 0;
                var a = FoldedA(adapter);
                result = result is null
                    ? LoRAFunction.Linear(input, BaseWeight, BaseBias, a, LoraB(adapter), options.Scaling, dropout)
                    : LoRAFunction.AddTo(result, input, a, LoraB(adapter), options.Scaling, dropout);
            }
            return result ?? BaseLayer.forward(input);
        }

        /// <summary>Q·(P ⊙ Λ)·α / (r₀ + 1e-5).</summary>
        public override Tensor DeltaWeight(string adapter)
        {
            RequireAdapter(adapter);
            return matmul(LoraB(adapter), FoldedA(adapter)).mul(OptionsOf(adapter).Scaling);
        }

        /// <summary>An AdaLoRA config with the same <c>init_r</c>, and a <c>rank_pattern</c> entry, if any, of that length.</summary>
        public override void ValidateSettings(string adapter, AdapterSettings settings)
        {
            var current = Options(adapter);
            if (settings is not AdaLoRAOptions ada)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' is an AdaLoRA adapter; the file describes a {settings.PeftType} adapter");
            if (ada.InitRank != current.InitRank)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' has init_r {current.InitRank}; the file has init_r {ada.InitRank}");
            if (ada.RankPattern is { } pattern && pattern.Count != current.InitRank)
                throw new InvalidOperationException(
                    $"{Site}: adapter '{adapter}' has init_r {current.InitRank}; the file's rank_pattern entry for this layer has {pattern.Count} values");
        }

        /// <summary>The file's options replace the adapter's (the file wins, as in PEFT), its rank pattern included.</summary>
        public override void ApplySettings(string adapter, AdapterSettings settings)
        {
            ValidateSettings(adapter, settings);
            SetOptions(adapter, (AdaLoRAOptions)settings);
        }

        /// <summary>Sets the mask: the ranks not kept get Λ = 0, and the pattern is what a save writes.</summary>
        internal void SetRankPattern(string adapter, bool[] kept)
        {
            SetOptions(adapter, OptionsOf(adapter) with { RankPattern = kept });
            ApplyMask(adapter, kept);
        }

        /// <summary>Zeroes Λ where <paramref name="kept"/> is false (PEFT's <c>masked_fill_</c>).</summary>
        internal void ApplyMask(string adapter, bool[] kept)
        {
            using var scope = NewDisposeScope();
            var e = LoraE(adapter);
            using var _ = no_grad();
            var keep = tensor(kept, device: e.device).unsqueeze(1);
            e.masked_fill_(keep.logical_not(), 0.0);
        }

        // ---- importance --------------------------------------------------------------------------------------------

        /// <summary>The EMAs of one adapter: Ī and Ū of P, Λ and Q (PEFT's <c>exp_avg_ipt</c>, <c>exp_avg_unc</c>).</summary>
        private sealed class Importance : IDisposable
        {
            public readonly Tensor[] Sensitivity;
            public readonly Tensor[] Uncertainty;

            public Importance(IEnumerable<Parameter> parameters)
            {
                Sensitivity = parameters.Select(p => zeros_like(p).detach().DetachFromDisposeScope()).ToArray();
                Uncertainty = Sensitivity.Select(t => zeros_like(t).DetachFromDisposeScope()).ToArray();
            }

            public void Dispose()
            {
                foreach (var t in Sensitivity.Concat(Uncertainty)) t.Dispose();
            }
        }

        private Parameter[] Triplet(string adapter) => new[] { LoraA(adapter), LoraE(adapter), LoraB(adapter) };

        /// <summary>P, Λ and Q under their names (as saved, before the adapter name is stripped), each with the dimension that indexes its ranks.</summary>
        private (string Name, Parameter Tensor, long RankDim)[] NamedTriplet(string adapter) => new[]
        {
            ($"lora_A.{adapter}", LoraA(adapter), 0L),
            ($"lora_E.{adapter}", LoraE(adapter), 0L),
            ($"lora_B.{adapter}", LoraB(adapter), 1L),
        };

        /// <summary>
        /// One EMA step for each entry of P, Λ and Q: I = |p ⊙ ∇p| (a parameter without a gradient has I = 0),
        /// Ī ← β₁·Ī + (1 − β₁)·I, Ū ← β₂·Ū + (1 − β₂)·|I − Ī| (with the new Ī), as PEFT's <c>update_ipt</c>.
        /// </summary>
        internal void UpdateImportance(string adapter)
        {
            var options = OptionsOf(adapter);
            var parameters = Triplet(adapter);
            if (!_importance.TryGetValue(adapter, out var state)) _importance[adapter] = state = new Importance(parameters);
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            for (int i = 0; i < parameters.Length; i++)
            {
                var p = parameters[i];
                var ipt = p.grad is { } grad ? p.detach().mul(grad).abs_() : zeros_like(p);
                state.Sensitivity[i].mul_(options.Beta1).add_(ipt, alpha: 1 - options.Beta1);
                state.Uncertainty[i].mul_(options.Beta2).add_(ipt.sub(state.Sensitivity[i]).abs_(), alpha: 1 - options.Beta2);
            }
        }

        /// <summary>The smoothed sensitivity Ī and uncertainty Ū of P, Λ and Q (in that order); zeros before the first update.</summary>
        public (Tensor[] Sensitivity, Tensor[] Uncertainty) ImportanceOf(string adapter)
        {
            RequireAdapter(adapter);
            return _importance.TryGetValue(adapter, out var state)
                ? (state.Sensitivity, state.Uncertainty)
                : (Triplet(adapter).Select(p => zeros_like(p).detach()).ToArray(), Triplet(adapter).Select(p => zeros_like(p).detach()).ToArray());
        }

        /// <summary>
        /// The score of each rank i, PEFT's triplet score: S_i = s(Λ_i) + mean_j s(P_ij) + mean_k s(Q_ki) with
        /// s = Ī ⊙ Ū ([r₀]).
        /// </summary>
        public Tensor TripletScores(string adapter)
        {
            var (ipt, unc) = ImportanceOf(adapter);
            using var scope = NewDisposeScope();
            var sa = ipt[0].mul(unc[0]).mean(new long[] { 1 });
            var se = ipt[1].mul(unc[1]).view(-1);
            var sb = ipt[2].mul(unc[2]).mean(new long[] { 0 });
            return se.add(sa).add(sb).MoveToOuterDisposeScope();
        }

        /// <summary>Forgets the EMAs (PEFT resets them once the final mask is set).</summary>
        internal void ResetImportance(string adapter)
        {
            if (_importance.Remove(adapter, out var state)) state.Dispose();
        }

        /// <summary>‖P·Pᵀ − I‖_F and ‖QᵀQ − I‖_F (not squared, as PEFT), for the orthogonal regulariser.</summary>
        internal (Tensor P, Tensor Q) OrthogonalityGaps(string adapter)
        {
            var p = LoraA(adapter);
            var q = LoraB(adapter);
            var eye = torch.eye(p.shape[0], dtype: p.dtype, device: p.device);
            return (matmul(p, p.t()).sub(eye).norm(), matmul(q.t(), q).sub(eye).norm());
        }

        // ---- files -------------------------------------------------------------------------------------------------

        /// <summary>P, Λ and Q sliced to the kept ranks (PEFT's <c>resize_state_dict_by_rank_pattern</c>), and the options.</summary>
        public (IReadOnlyList<(string Name, Tensor Tensor)> Tensors, AdapterSettings Settings) ForFile(string adapter)
        {
            var options = Options(adapter);
            using var scope = NewDisposeScope();
            var index = KeptIndex(KeptRanks(adapter), LoraA(adapter).device);
            var tensors = NamedTriplet(adapter)
                .Select(t => (t.Name, t.Tensor.detach().index_select(t.RankDim, index).MoveToOuterDisposeScope()))
                .ToList();
            return (tensors, options);
        }

        /// <summary>
        /// The adapter as a plain LoRA, for tools that read only LoRA: A = (P ⊙ Λ)[kept] ([k, in]), B = Q[:, kept]
        /// ([out, k]), rank k and alpha α·k / (r₀ + 1e-5), so alpha / rank is the layer's scaling α / (r₀ + 1e-5) and the
        /// delta is the same. A layer that kept no rank (k = 0) has no LoRA: null.
        /// </summary>
        public (IReadOnlyList<(string Name, Tensor Tensor)> Tensors, LoRAOptions Settings)? AsPlainLoRA(string adapter)
        {
            var options = Options(adapter);
            var kept = KeptRanks(adapter);
            int k = kept.Count(x => x);
            if (k == 0) return null;
            using var scope = NewDisposeScope();
            var index = KeptIndex(kept, LoraA(adapter).device);
            var a = FoldedA(adapter).detach().index_select(0, index).MoveToOuterDisposeScope();
            var b = LoraB(adapter).detach().index_select(1, index).MoveToOuterDisposeScope();
            var settings = new LoRAOptions { Rank = k, Alpha = options.Alpha * k / (options.InitRank + RankEpsilon), Dropout = options.Dropout };
            return (new List<(string, Tensor)> { ($"lora_A.{adapter}.weight", a), ($"lora_B.{adapter}.weight", b) }, settings);
        }

        /// <inheritdoc />
        public IReadOnlyList<(string Name, long[] Shape)> FileShapes(string adapter, AdapterSettings fileSettings)
        {
            long k = ((AdaLoRAOptions)fileSettings).KeptRanks().Count(x => x);
            return NamedTriplet(adapter).Select(t =>
            {
                var shape = t.Tensor.shape.ToArray(); // the parameter's shape with k ranks
                shape[t.RankDim] = k;
                return (t.Name, shape);
            }).ToList();
        }

        /// <summary>The file's ranks at the kept positions of full-size P, Λ, Q; zeros at the others.</summary>
        public IReadOnlyList<(Tensor Target, Tensor Source)> FromFile(string adapter, AdapterSettings fileSettings, IReadOnlyDictionary<string, Tensor> fileTensors)
        {
            var index = KeptIndex(((AdaLoRAOptions)fileSettings).KeptRanks(), LoraA(adapter).device);
            var copies = new List<(Tensor, Tensor)>();
            foreach (var (name, target, rankDim) in NamedTriplet(adapter))
            {
                var full = zeros(target.shape, dtype: target.dtype, device: target.device);
                full.index_copy_(rankDim, index, fileTensors[name].to(target.dtype, target.device));
                copies.Add((target, full));
            }
            return copies;
        }

        private static Tensor KeptIndex(IReadOnlyList<bool> kept, Device device) =>
            tensor(Enumerable.Range(0, kept.Count).Where(i => kept[i]).Select(i => (long)i).ToArray(), dtype: ScalarType.Int64, device: device);

        /// <inheritdoc />
        protected override void RemoveAdapterParameters(string adapter)
        {
            base.RemoveAdapterParameters(adapter);
            ResetImportance(adapter);
        }
    }

    /// <summary>The entry point generated code calls for <c>[AdaLoRA]</c>, and AdaLoRA's budget allocation.</summary>
    public static class AdaLoRA
    {
        /// <summary>
        /// Wraps <paramref name="layer"/> in an <see cref="AdaLoRALinear"/> with adapter <paramref name="adapter"/>, or
        /// adds the adapter to it if it already is one. Checks the options, with the analyzers' wording.
        /// </summary>
        public static nn.Module<Tensor, Tensor> Wrap(nn.Module<Tensor, Tensor>? layer, string site, string adapter, AdaLoRAOptions options) =>
            AdapterWrap.Linear<AdaLoRALinear>(layer, site, "AdaLoRA", existing => existing.AddAdapter(adapter, options), linear => new AdaLoRALinear(site, linear, adapter, options));

        /// <summary>The allocator every AdaLoRA layer returns.</summary>
        public static IRankAllocator Allocator { get; } = new RankAllocator();

        internal static void Validate(string site, AdaLoRAOptions options)
        {
            AdapterChecks.RankAtLeastOne(site, "AdaLoRA target", options.TargetRank);
            if (options.InitRank < options.TargetRank)
                throw new ArgumentException(PeftMessages.Format(PeftMessages.InitRankBelowTarget, site, "AdaLoRA", options.InitRank, options.TargetRank));
            AdapterChecks.Dropout(site, options.Dropout);
            if (options.TotalSteps < 1)
                throw new ArgumentException(PeftMessages.Format(PeftMessages.TotalStepsMissing, site, options.TotalSteps));
            if (options.Tinit >= options.TotalSteps - options.Tfinal)
                throw new ArgumentException(PeftMessages.Format(PeftMessages.ScheduleEmpty, site, options.Tinit, options.TotalSteps, options.Tfinal, options.TotalSteps - options.Tfinal));
            AdapterChecks.Betas(site, "AdaLoRA", options.Beta1, options.Beta2);
            if (options.DeltaT < 1)
                throw new ArgumentException(PeftMessages.Format(PeftMessages.IntervalTooSmall, site, "AdaLoRA", "DeltaT", options.DeltaT));
            if (options.Tinit < 0 || options.Tfinal < 0)
                throw new ArgumentException($"{site}: AdaLoRA Tinit and Tfinal must be at least 0, got {options.Tinit} and {options.Tfinal}");
            if (!(options.OrthRegWeight >= 0))
                throw new ArgumentException(PeftMessages.Format(PeftMessages.NegativeOption, site, "AdaLoRA", "OrthRegWeight", options.OrthRegWeight));
        }

        /// <summary>
        /// PEFT's budget schedule for step <paramref name="step"/> with init budget b₀ = Σ r₀ and target budget
        /// b_T = target_r · #layers: b₀ until Tinit (no masking); b_T after TotalSteps − Tfinal (mask every step);
        /// in between ⌊(b₀ − b_T)·(1 − (step − Tinit)/(TotalSteps − Tfinal − Tinit))³ + b_T⌋, masking when
        /// step % DeltaT == 0.
        /// </summary>
        public static (int Budget, bool Mask) Budget(AdaLoRAOptions options, int layers, int step)
        {
            int initBudget = options.InitRank * layers;
            int targetBudget = options.TargetRank * layers;
            if (step <= options.Tinit) return (initBudget, false);
            if (step > options.TotalSteps - options.Tfinal) return (targetBudget, true);
            double coefficient = 1 - (double)(step - options.Tinit) / (options.TotalSteps - options.Tfinal - options.Tinit);
            int budget = (int)((initBudget - targetBudget) * (coefficient * coefficient * coefficient) + targetBudget);
            return (budget, step % options.DeltaT == 0);
        }

        /// <summary>
        /// Keeps the <paramref name="budget"/> best-scoring ranks over all layers: the threshold is the k-th smallest
        /// triplet score, k = b₀ − budget, and every rank scoring at most that is masked (PEFT's <c>mask_to_budget</c>;
        /// with k &lt; 1 nothing is masked). Sets each layer's kept ranks on the layer.
        /// </summary>
        internal static void MaskToBudget(List<AdaLoRALinear> layers, string adapter, int budget)
        {
            using var scope = NewDisposeScope();
            var scores = layers.Select(l => l.TripletScores(adapter).to(ScalarType.Float64)).ToList();
            var all = cat(scores.ToArray());
            long k = all.shape[0] - budget;
            double? threshold = k < 1 ? null : all.kthvalue(k, 0, false).values.item<double>();
            foreach (var (layer, score) in layers.Zip(scores))
            {
                bool[] kept = threshold is { } t
                    ? score.gt(t).data<bool>().ToArray()
                    : Enumerable.Repeat(true, (int)score.shape[0]).ToArray();
                layer.SetRankPattern(adapter, kept);
            }
        }

        private sealed class RankAllocator : IRankAllocator
        {
            /// <summary>
            /// PEFT's <c>update_and_allocate</c>: before TotalSteps − Tfinal, update the importance EMAs and mask to the
            /// scheduled budget when the schedule says so; at TotalSteps − Tfinal, mask to the target budget, freeze that
            /// mask (the saved <c>rank_pattern</c>) and reset the EMAs; after it, re-apply the frozen mask.
            /// </summary>
            public void UpdateAndAllocate(IReadOnlyList<(string Path, IAdapterLayer Layer)> sites, string adapter, int step)
            {
                var layers = RankAllocation.LayersOf<AdaLoRALinear>(sites, adapter);
                if (layers.Count == 0) return;
                var options = layers[0].Options(adapter);
                int final = options.TotalSteps - options.Tfinal;
                if (step < final)
                {
                    foreach (var layer in layers) layer.UpdateImportance(adapter);
                    var (budget, mask) = Budget(options, layers.Count, step);
                    if (mask) MaskToBudget(layers, adapter, budget);
                }
                else if (step == final)
                {
                    MaskToBudget(layers, adapter, Budget(options, layers.Count, step).Budget);
                    foreach (var layer in layers) layer.ResetImportance(adapter);
                }
                else
                {
                    foreach (var layer in layers)
                        if (layer.Options(adapter).RankPattern is { } pattern) layer.ApplyMask(adapter, pattern.ToArray());
                }
            }

            /// <summary>
            /// orth_reg_weight · mean over every P and Q of the adapter's layers of ‖P·Pᵀ − I‖_F and ‖QᵀQ − I‖_F (the
            /// Frobenius norm itself, not its square, as PEFT computes it; the paper writes it squared).
            /// </summary>
            public Tensor? Regularization(IReadOnlyList<(string Path, IAdapterLayer Layer)> sites, string adapter)
            {
                var layers = RankAllocation.LayersOf<AdaLoRALinear>(sites, adapter);
                if (layers.Count == 0) return null;
                double weight = layers[0].Options(adapter).OrthRegWeight;
                if (weight == 0) return null;
                Tensor? sum = null;
                foreach (var layer in layers)
                {
                    var (p, q) = layer.OrthogonalityGaps(adapter);
                    sum = sum is null ? p.add(q) : sum.add(p).add(q);
                }
                return sum!.mul(weight / (2.0 * layers.Count));
            }
        }
    }

    /// <summary>
    /// The options of one AdaLoRA adapter, as <c>[AdaLoRA]</c> declares them (the same defaults), and its entry in PEFT's
    /// <c>AdaLoraConfig</c> (all held once per adapter; <c>r</c> is written as PEFT's ignored default 8).
    /// <see cref="RankPattern"/> is this layer's last mask, written to and read from <c>rank_pattern</c>.
    /// </summary>
    public sealed record AdaLoRAOptions : AdapterSettings
    {
        /// <summary>The average rank per layer the budget ends at (PEFT's <c>target_r</c>).</summary>
        public int TargetRank { get; init; } = 8;

        /// <summary>The rank every layer starts at (PEFT's <c>init_r</c>).</summary>
        public int InitRank { get; init; } = 12;

        /// <summary>PEFT's <c>lora_alpha</c>.</summary>
        public double Alpha { get; init; } = 8;

        /// <summary>Dropout probability on the adapter input (PEFT's <c>lora_dropout</c>).</summary>
        public double Dropout { get; init; }

        /// <summary>PEFT's <c>tinit</c>.</summary>
        public int Tinit { get; init; }

        /// <summary>PEFT's <c>tfinal</c>.</summary>
        public int Tfinal { get; init; }

        /// <summary>PEFT's <c>deltaT</c>.</summary>
        public int DeltaT { get; init; } = 1;

        /// <summary>PEFT's <c>beta1</c>.</summary>
        public double Beta1 { get; init; } = 0.85;

        /// <summary>PEFT's <c>beta2</c>.</summary>
        public double Beta2 { get; init; } = 0.85;

        /// <summary>PEFT's <c>orth_reg_weight</c>.</summary>
        public double OrthRegWeight { get; init; } = 0.5;

        /// <summary>PEFT's <c>total_step</c>; required (at least 1).</summary>
        public int TotalSteps { get; init; }

        /// <summary>This layer's kept ranks (PEFT's <c>rank_pattern</c> entry <c>&lt;path&gt;.lora_E</c>), or null before the first mask.</summary>
        public IReadOnlyList<bool>? RankPattern { get; init; }

        /// <summary>The kept ranks: <see cref="RankPattern"/>, or all <see cref="InitRank"/> before the first mask.</summary>
        internal bool[] KeptRanks() => RankPattern?.ToArray() ?? Enumerable.Repeat(true, InitRank).ToArray();

        /// <summary>The factor applied to Q·(P ⊙ Λ): α / (r₀ + 1e-5), PEFT's <c>scaling / (ranknum + 1e-5)</c> with its frozen ranknum.</summary>
        public double Scaling => Alpha / (InitRank + AdaLoRALinear.RankEpsilon);

        /// <inheritdoc />
        public override string PeftType => "ADALORA";

        /// <inheritdoc />
        public override void WriteSharedFields(JsonObject config)
        {
            config["r"] = 8; // PEFT's LoraConfig default, which AdaLoRA ignores
            config["lora_alpha"] = AdapterConfig.IntegralAsInt(Alpha);
            config["lora_dropout"] = AdapterConfig.Float(Dropout);
            config["use_rslora"] = false;
            config["use_dora"] = false;
            config["fan_in_fan_out"] = false;
            config["bias"] = "none";
            config["init_lora_weights"] = true;
            config["init_r"] = InitRank;
            config["target_r"] = TargetRank;
            config["tinit"] = Tinit;
            config["tfinal"] = Tfinal;
            config["deltaT"] = DeltaT;
            config["beta1"] = AdapterConfig.Float(Beta1);
            config["beta2"] = AdapterConfig.Float(Beta2);
            config["orth_reg_weight"] = AdapterConfig.Float(OrthRegWeight);
            config["total_step"] = TotalSteps;
        }

        /// <summary>
        /// <c>rank_pattern</c>: each layer's mask as a list of booleans under <c>&lt;path&gt;.lora_E</c> (adapter name
        /// removed, as PEFT saves it), or null before any mask; and PEFT's empty <c>alpha_pattern</c>.
        /// </summary>
        public override void WriteLayerListFields(JsonObject config, IReadOnlyList<(string Path, AdapterSettings Settings)> sites)
        {
            config["alpha_pattern"] = new JsonObject();
            var layers = sites.Select(s => (s.Path, Options: (AdaLoRAOptions)s.Settings)).ToList();
            if (layers.All(l => l.Options.RankPattern is null))
            {
                config["rank_pattern"] = null;
                return;
            }
            var pattern = new JsonObject();
            foreach (var (path, options) in layers)
                pattern[path + ".lora_E"] = new JsonArray(options.KeptRanks().Select(b => (JsonNode?)JsonValue.Create(b)).ToArray());
            config["rank_pattern"] = pattern;
        }

        /// <summary>Reads an AdaLoRA config (PEFT's defaults) and this layer's <c>rank_pattern</c> entry, if any.</summary>
        public static AdapterSettings FromConfig(JsonObject config, string modulePath, string file)
        {
            int Int(string key, int fallback) => checked((int)AdapterConfig.Number(config, key, file, fallback));
            var options = new AdaLoRAOptions
            {
                TargetRank = Int("target_r", 8),
                InitRank = Int("init_r", 12),
                Alpha = AdapterConfig.Number(config, "lora_alpha", file, 8),
                Dropout = AdapterConfig.Probability(config, "lora_dropout", file),
                Tinit = Int("tinit", 0),
                Tfinal = Int("tfinal", 0),
                DeltaT = Int("deltaT", 1),
                Beta1 = AdapterConfig.Number(config, "beta1", file, 0.85),
                Beta2 = AdapterConfig.Number(config, "beta2", file, 0.85),
                OrthRegWeight = AdapterConfig.Number(config, "orth_reg_weight", file, 0.5),
                TotalSteps = config["total_step"] is null ? 0 : Int("total_step", 0),
            };
            if (config["use_dora"] is JsonValue dora && dora.TryGetValue<bool>(out var useDora) && useDora)
                throw new InvalidDataException($"{file}: use_dora is true, which AdaLoRA does not support");
            if (config["rank_pattern"] is JsonObject pattern)
            {
                foreach (var (key, value) in pattern)
                {
                    // PEFT strips the adapter name on save; "<path>.lora_E" (or "<path>.lora_E.<adapter>" from memory).
                    int at = key.IndexOf(".lora_E", StringComparison.Ordinal);
                    string path = at < 0 ? key : key[..at];
                    if (!AdapterConfig.MatchesModule(modulePath, path)) continue;
                    if (value is not JsonArray list || list.Any(v => v is not JsonValue b || !b.TryGetValue<bool>(out _)))
                        throw new InvalidDataException($"{file}: rank_pattern['{key}'] must be a list of booleans");
                    options = options with { RankPattern = list.Select(v => v!.GetValue<bool>()).ToArray() };
                    break;
                }
            }
            return options;
        }
    }
}

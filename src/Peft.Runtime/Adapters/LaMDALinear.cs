using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json.Nodes;
using Peft.Runtime.Kernels;
using Peft.Runtime.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Adapters
{
    /// <summary>
    /// LaMDA on a <c>Linear</c> layer: y = xWᵀ + b + s·drop(x)·Aᵀ·Sᵀ·Bᵀ, A [r, in] frozen (<c>lora_A.&lt;adapter&gt;.weight</c>),
    /// the core S [r, r] trainable (<c>lamda_S.&lt;adapter&gt;.weight</c>), B [out, r] (<c>lora_B.&lt;adapter&gt;.weight</c>)
    /// trainable until its columns freeze one by one on the adapter's schedule; s = α / r.
    /// </summary>
    /// <remarks>
    /// <para>Init (the paper's): with W = U·diag(σ)·Vᵀ, A = Vᵀ[:r], B = U[:, :r] and S = 0, so the layer starts at its base.
    /// B's column k goes with σ_k, so the columns freeze largest singular value first.</para>
    /// <para>Freezing: after optimizer step t (<see cref="AfterOptimizerStep"/>, which <c>AdapterTrainer</c> calls), the
    /// columns due by t (<see cref="LaMDAOptions.FrozenColumnsAt"/>) are frozen: their value after step t is kept and put
    /// back after every later step (so momentum or weight decay in the optimizer cannot move them), and their gradient is
    /// zero. Once all are frozen B stops requiring a gradient and leaves <see cref="AdapterParameters"/>: only S trains.</para>
    /// <para>Saved as exactly a LoRA: <c>lora_A</c> = S·A, <c>lora_B</c> = B, the same r and α. Loading a LoRA file sets
    /// A = the file's <c>lora_A</c>, S = I and B = the file's <c>lora_B</c>: the same function, and training goes on with
    /// S in the basis of the file's A.</para>
    /// </remarks>
    public sealed class LaMDALinear : AdapterLayerBase<LaMDAOptions>, IStepScheduledAdapter, IFileTensorLayout
    {
        private readonly AdapterModuleDict<Linear> lora_A = new(); // frozen: not an adapter dict, so never trainable
        private readonly AdapterModuleDict<Linear> lamda_S = new();
        private readonly AdapterModuleDict<Linear> lora_B = new();
        private readonly Dictionary<string, FreezeState> _freeze = new(StringComparer.Ordinal);

        /// <summary>B's frozen columns: how many (the leading ones) and their kept values ([out, r]; columns past the count unused).</summary>
        private sealed class FreezeState
        {
            public int Columns;
            public Tensor Kept = null!;
        }

        /// <summary>Wraps <paramref name="baseLayer"/> and adds the first adapter.</summary>
        public LaMDALinear(string site, Linear baseLayer, string adapter, LaMDAOptions options) : base(site, baseLayer)
        {
            register_module(nameof(lora_A), lora_A);
            RegisterAdapterDict(nameof(lamda_S), lamda_S);
            RegisterAdapterDict(nameof(lora_B), lora_B);
            AddAdapter(adapter, options);
        }

        /// <inheritdoc />
        public override string PeftType => "LORA";

        /// <summary>The frozen projection A of an adapter ([r, in]).</summary>
        public Parameter LoraA(string adapter) => lora_A[adapter].weight!;

        /// <summary>The core S of an adapter ([r, r]).</summary>
        public Parameter Core(string adapter) => lamda_S[adapter].weight!;

        /// <summary>The projection B of an adapter ([out, r]).</summary>
        public Parameter LoraB(string adapter) => lora_B[adapter].weight!;

        /// <summary>How many of B's columns (the leading ones) are frozen.</summary>
        public int FrozenColumns(string adapter)
        {
            RequireAdapter(adapter);
            return _freeze[adapter].Columns;
        }

        /// <summary>Adds a named adapter, initialised from the singular vectors of the base weight; checked against the layer's shape first.</summary>
        public void AddAdapter(string adapter, LaMDAOptions options)
        {
            LaMDA.Validate(Site, options, InFeatures, OutFeatures);
            var weight = BaseWeight;
            int r = options.Rank;
            var a = nn.Linear(InFeatures, r, hasBias: false, device: weight.device, dtype: weight.dtype);
            var core = nn.Linear(r, r, hasBias: false, device: weight.device, dtype: weight.dtype);
            var b = nn.Linear(r, OutFeatures, hasBias: false, device: weight.device, dtype: weight.dtype);
            try
            {
                using (var scope = NewDisposeScope())
                using (no_grad())
                {
                    var original = OriginalWeight();
                    var w = original.dtype == ScalarType.Float64 ? original : original.to(ScalarType.Float32);
                    var (u, _, vh) = linalg.svd(w, fullMatrices: false);
                    a.weight!.copy_(vh.narrow(0, 0, r));
                    b.weight!.copy_(u.narrow(1, 0, r));
                    core.weight!.zero_();
                }
                a.weight!.requires_grad = false;
                RegisterAdapter(adapter, options); // the last check: nothing below fails
            }
            catch
            {
                a.Dispose();
                core.Dispose();
                b.Dispose();
                throw;
            }
            lora_A.Add(adapter, a);
            lamda_S.Add(adapter, core);
            lora_B.Add(adapter, b);
            Tensor kept;
            using (no_grad()) kept = b.weight!.detach().clone().DetachFromDisposeScope(); // lives as long as the adapter
            _freeze[adapter] = new FreezeState { Kept = kept };
            Advance(adapter, 0); // FreezeBStart = FreezeBSteps = 0: B is frozen from the start
        }

        /// <summary>
        /// The adapter's trainable parameters: S, and B while any of its columns still trains (the frozen A never).
        /// </summary>
        public override IEnumerable<(string Name, Parameter Parameter)> AdapterParameters(string adapter)
        {
            bool bFrozen = _freeze.TryGetValue(adapter, out var state) && state.Columns == OptionsOf(adapter).Rank;
            return base.AdapterParameters(adapter).Where(p => !(bFrozen && p.Name.StartsWith(nameof(lora_B) + ".", StringComparison.Ordinal)));
        }

        /// <inheritdoc />
        public void AfterOptimizerStep(int completedSteps)
        {
            foreach (var adapter in AdapterNames) Advance(adapter, completedSteps);
        }

        /// <summary>Puts the frozen columns back to their kept values and freezes those due by <paramref name="completedSteps"/>.</summary>
        private void Advance(string adapter, int completedSteps)
        {
            var state = _freeze[adapter];
            var b = LoraB(adapter);
            int due = Math.Max(state.Columns, OptionsOf(adapter).FrozenColumnsAt(completedSteps));
            using (no_grad())
            {
                if (state.Kept.device_type != b.device_type || state.Kept.device_index != b.device_index || state.Kept.dtype != b.dtype)
                {
                    var moved = state.Kept.to(b.dtype, b.device).DetachFromDisposeScope(); // the module was moved: follow it
                    state.Kept.Dispose();
                    state.Kept = moved;
                }
                if (state.Columns > 0) b.narrow(1, 0, state.Columns).copy_(state.Kept.narrow(1, 0, state.Columns));
                if (due > state.Columns) state.Kept.narrow(1, state.Columns, due - state.Columns).copy_(b.narrow(1, state.Columns, due - state.Columns));
            }
            state.Columns = due;
            if (due == OptionsOf(adapter).Rank) b.requires_grad = false;
        }

        /// <summary>y = xWᵀ + b, then each active, unmerged adapter through <see cref="LaMDAFunction"/>, which keeps only drop(x)·Aᵀ for backward.</summary>
        protected override Tensor ForwardActive(Tensor input)
        {
            var result = BaseLayer.forward(input);
            foreach (var adapter in UnmergedActiveAdapters)
            {
                var options = OptionsOf(adapter);
                result = LaMDAFunction.AddTo(result, input, LoraA(adapter), Core(adapter), LoraB(adapter), options.Scaling,
                    training ? options.Dropout : 0, _freeze[adapter].Columns);
            }
            return result;
        }

        /// <summary>s·B·S·A ([out, in]).</summary>
        public override Tensor DeltaWeight(string adapter)
        {
            RequireAdapter(adapter);
            return matmul(LoraB(adapter), matmul(Core(adapter), LoraA(adapter))).mul(OptionsOf(adapter).Scaling);
        }

        /// <summary>The LoRA the adapter is: <c>lora_A</c> = S·A ([r, in]), <c>lora_B</c> = B ([out, r]).</summary>
        private IReadOnlyList<(string Name, Tensor Tensor)> LoRAFactors(string adapter)
        {
            RequireAdapter(adapter);
            using var _ = no_grad();
            return PlainLoRAFile.Tensors(adapter, matmul(Core(adapter), LoraA(adapter)).detach(), LoraB(adapter).detach());
        }

        /// <inheritdoc />
        public (IReadOnlyList<(string Name, Tensor Tensor)> Tensors, AdapterSettings Settings) ForFile(string adapter) => (LoRAFactors(adapter), Settings(adapter));

        /// <inheritdoc />
        public IReadOnlyList<(string Name, long[] Shape)> FileShapes(string adapter, AdapterSettings fileSettings) =>
            PlainLoRAFile.Shapes(adapter, OptionsOf(adapter).Rank, InFeatures, OutFeatures);

        /// <summary>A LoRA file's factors: A = <c>lora_A</c>, S = I, B = <c>lora_B</c> (and B's frozen columns keep the file's values).</summary>
        public IReadOnlyList<(Tensor Target, Tensor Source)> FromFile(string adapter, AdapterSettings fileSettings, IReadOnlyDictionary<string, Tensor> fileTensors)
        {
            var core = Core(adapter);
            var b = fileTensors[PlainLoRAFile.KeyB(adapter)];
            return new (Tensor, Tensor)[]
            {
                (LoraA(adapter), fileTensors[PlainLoRAFile.KeyA(adapter)]),
                (core, torch.eye(core.shape[0], dtype: core.dtype, device: core.device)),
                (LoraB(adapter), b),
                (_freeze[adapter].Kept, b),
            };
        }

        /// <summary>
        /// Checks that a file's settings fit: a plain LoRA (<c>peft_type: "LORA"</c>, no DoRA, no rsLoRA, an init that
        /// left the base weight alone) of the same rank.
        /// </summary>
        public override void ValidateSettings(string adapter, AdapterSettings settings)
        {
            var current = Options(adapter);
            var lora = PlainLoRAFile.Require(Site, adapter, "LaMDA", settings);
            if (lora.UseRsLora)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' is a LaMDA adapter, scaled by alpha / r; the file's LoRA uses rsLoRA (alpha / √r)");
            PlainLoRAFile.RequireOnBaseWeight(Site, adapter, "LaMDA", lora, current.Rank);
        }

        /// <inheritdoc />
        public override void ApplySettings(string adapter, AdapterSettings settings)
        {
            ValidateSettings(adapter, settings);
            var lora = (LoRAOptions)settings;
            SetOptions(adapter, OptionsOf(adapter) with { Alpha = lora.Alpha, Dropout = lora.Dropout });
        }

        /// <inheritdoc />
        protected override void RemoveAdapterParameters(string adapter)
        {
            base.RemoveAdapterParameters(adapter);
            lora_A.Remove(adapter);
            if (_freeze.Remove(adapter, out var state)) state.Kept.Dispose();
        }
    }

    /// <summary>The entry point generated code calls for <c>[LaMDA]</c>.</summary>
    public static class LaMDA
    {
        /// <summary>
        /// Wraps <paramref name="layer"/> in a <see cref="LaMDALinear"/> with adapter <paramref name="adapter"/>, or adds the
        /// adapter to it if it already is one. Checks the options against the layer's real shape, with the analyzers' wording.
        /// </summary>
        /// <param name="layer">The member's current value: a <c>Linear</c>, or a <see cref="LaMDALinear"/> already.</param>
        /// <param name="site">Class and member, e.g. <c>Demo.Block.q</c>.</param>
        /// <param name="adapter">The adapter name.</param>
        /// <param name="options">The declared options.</param>
        public static nn.Module<Tensor, Tensor> Wrap(nn.Module<Tensor, Tensor>? layer, string site, string adapter, LaMDAOptions options) =>
            AdapterWrap.Linear<LaMDALinear>(layer, site, "LaMDA", existing => existing.AddAdapter(adapter, options), linear => new LaMDALinear(site, linear, adapter, options));

        internal static void Validate(string site, LaMDAOptions options, long inFeatures, long outFeatures)
        {
            AdapterChecks.RankWithinLayer(site, "LaMDA", options.Rank, inFeatures, outFeatures);
            AdapterChecks.Dropout(site, options.Dropout);
            if (options.FreezeBStart < 0)
                throw new ArgumentException(PeftMessages.Format(PeftMessages.ScheduleStepsNegative, site, "LaMDA", nameof(options.FreezeBStart), options.FreezeBStart));
            if (options.FreezeBSteps < 0)
                throw new ArgumentException(PeftMessages.Format(PeftMessages.ScheduleStepsNegative, site, "LaMDA", nameof(options.FreezeBSteps), options.FreezeBSteps));
        }
    }

    /// <summary>
    /// The options of one LaMDA adapter, as <c>[LaMDA]</c> declares them (the same defaults). Its file is a plain LoRA, so
    /// its config entry is <c>LoraConfig</c>'s (<c>r</c>, <c>lora_alpha</c>, <c>lora_dropout</c>); the freezing schedule is
    /// training-only and not saved.
    /// </summary>
    public sealed record LaMDAOptions : AdapterSettings
    {
        /// <summary>The rank r (the saved LoRA's <c>r</c>).</summary>
        public int Rank { get; init; } = 8;

        /// <summary>The update is scaled by Alpha / r (the saved LoRA's <c>lora_alpha</c>).</summary>
        public double Alpha { get; init; } = 8;

        /// <summary>Dropout probability on the adapter input (the saved LoRA's <c>lora_dropout</c>).</summary>
        public double Dropout { get; init; }

        /// <summary>Optimizer steps before B's first column freezes.</summary>
        public int FreezeBStart { get; init; }

        /// <summary>Optimizer steps over which B's columns freeze one by one (the paper's t_i).</summary>
        public int FreezeBSteps { get; init; } = 500;

        /// <summary>The factor applied to B·S·A.</summary>
        public double Scaling => Alpha / Rank;

        /// <summary>
        /// How many of B's columns are frozen once <paramref name="completedSteps"/> optimizer steps have completed: column k
        /// (0-based) from step FreezeBStart + ⌈FreezeBSteps·(k + 1) / r⌉ on.
        /// </summary>
        public int FrozenColumnsAt(int completedSteps)
        {
            long since = (long)completedSteps - FreezeBStart;
            if (since < 0) return 0;
            if (FreezeBSteps == 0) return Rank;
            // The largest k + 1 with ⌈FreezeBSteps·(k + 1) / r⌉ ≤ since, i.e. FreezeBSteps·(k + 1) ≤ since·r.
            return (int)Math.Min(Rank, since * Rank / FreezeBSteps);
        }

        /// <inheritdoc />
        public override string PeftType => "LORA";

        /// <inheritdoc />
        public override IReadOnlyDictionary<string, double> PerLayerFields => AsLoRA.PerLayerFields;

        /// <inheritdoc />
        public override void WriteSharedFields(JsonObject config) => AsLoRA.WriteSharedFields(config);

        /// <summary>The plain LoRA the adapter's file describes.</summary>
        private LoRAOptions AsLoRA => new() { Rank = Rank, Alpha = Alpha, Dropout = Dropout };
    }
}

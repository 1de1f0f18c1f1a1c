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
    /// LoRA on a <c>Linear</c> layer: y = xWᵀ + b + s·(dropout(x)·Aᵀ)·Bᵀ, A [r, in], B [out, r], with PEFT's
    /// parameter names <c>lora_A.&lt;adapter&gt;.weight</c> and <c>lora_B.&lt;adapter&gt;.weight</c>. An adapter may
    /// also be a DoRA adapter (PEFT's <c>use_dora</c>), which adds a magnitude vector
    /// <c>lora_magnitude_vector.&lt;adapter&gt;.weight</c> [out]; see <see cref="DoRA"/> for its formula.
    /// </summary>
    /// <remarks>
    /// Adapters initialised with <see cref="LoRAInit.PiSSA"/> or <see cref="LoRAInit.OLoRA"/> replace the base weight
    /// by the residual W − s·B₀·A₀ when they are added, as PEFT does; deleting such an adapter leaves the residual.
    /// </remarks>
    public sealed class LoRALinear : AdapterLayerBase<LoRAOptions>
    {
        private readonly AdapterModuleDict<Linear> lora_A = new();
        private readonly AdapterModuleDict<Linear> lora_B = new();
        private readonly AdapterModuleDict<DoRAMagnitude> lora_magnitude_vector = new();
        private readonly Dictionary<string, DoRA.MergeRecord> _doraMerges = new(StringComparer.Ordinal);
        private readonly Dictionary<string, (Tensor A, Tensor B)> _initialFactors = new(StringComparer.Ordinal); // PiSSA / OLoRA: A₀, B₀
        private readonly HashSet<string> _awaitingEva = new(StringComparer.Ordinal); // LoRAInit.Eva adapters not yet given data

        /// <summary>Wraps <paramref name="baseLayer"/> and adds the first adapter, a DoRA one when <paramref name="options"/> is a <see cref="DoRAOptions"/>.</summary>
        public LoRALinear(string site, Linear baseLayer, string adapter, LoRAOptions options) : base(site, baseLayer)
        {
            RegisterAdapterDict(nameof(lora_A), lora_A);
            RegisterAdapterDict(nameof(lora_B), lora_B);
            RegisterAdapterDict(nameof(lora_magnitude_vector), lora_magnitude_vector);
            AddAdapter(adapter, options);
        }

        /// <inheritdoc />
        public override string PeftType => "LORA";

        /// <summary>Whether adapter <paramref name="adapter"/> is a DoRA adapter (has a magnitude vector).</summary>
        public bool IsDora(string adapter)
        {
            RequireAdapter(adapter);
            return lora_magnitude_vector.Contains(adapter);
        }

        /// <summary>The A factor of an adapter ([r, in]).</summary>
        public Parameter LoraA(string adapter) => lora_A[adapter].weight!;

        /// <summary>The B factor of an adapter ([out, r]).</summary>
        public Parameter LoraB(string adapter) => lora_B[adapter].weight!;

        /// <summary>
        /// Whether adapter <paramref name="adapter"/> was declared with <see cref="LoRAInit.Eva"/> and has not been given its
        /// data yet (by the model's <c>InitializeEva</c> or by loading a file): training refuses to start on it.
        /// </summary>
        public bool AwaitsEva(string adapter)
        {
            RequireAdapter(adapter);
            return _awaitingEva.Contains(adapter);
        }

        /// <summary>
        /// EVA's result for this layer: A ← <paramref name="components"/> ([r', in]), B ← 0, rank r' and alpha
        /// <paramref name="alpha"/>; r' = 0 removes the adapter from the layer.
        /// </summary>
        internal void ApplyEva(string adapter, Tensor components, double alpha)
        {
            RequireAdapter(adapter);
            int rank = checked((int)components.shape[0]);
            if (rank == 0)
            {
                DeleteAdapter(adapter);
                return;
            }
            Resize(adapter, rank);
            using (no_grad()) LoraA(adapter).copy_(components.to(LoraA(adapter).dtype, LoraA(adapter).device));
            SetOptions(adapter, OptionsOf(adapter) with { Rank = rank, Alpha = alpha });
            _awaitingEva.Remove(adapter);
        }

        /// <summary>Replaces the adapter's factors by ones of rank <paramref name="rank"/> (A Kaiming-uniform, B zero).</summary>
        private void Resize(string adapter, int rank)
        {
            if (LoraA(adapter).shape[0] == rank) return;
            var (a, b) = NewFactors(rank);
            using (no_grad()) InitDefault(a, b);
            lora_A.Remove(adapter);
            lora_B.Remove(adapter);
            lora_A.Add(adapter, a);
            lora_B.Add(adapter, b);
        }

        /// <summary>A [rank, in] and B [out, rank] as bias-free linears on the base weight's device and dtype, not yet initialised.</summary>
        private (Linear A, Linear B) NewFactors(int rank)
        {
            var weight = BaseWeight;
            return (nn.Linear(InFeatures, rank, hasBias: false, device: weight.device, dtype: weight.dtype),
                    nn.Linear(rank, OutFeatures, hasBias: false, device: weight.device, dtype: weight.dtype));
        }

        /// <summary>PEFT's default LoRA init: A Kaiming-uniform (as <c>nn.Linear</c>'s own), B zero, so ΔW starts at 0.</summary>
        private static void InitDefault(Linear a, Linear b)
        {
            nn.init.kaiming_uniform_(a.weight!, a: Math.Sqrt(5));
            nn.init.zeros_(b.weight!);
        }

        /// <summary>
        /// The shape a file's tensor <paramref name="name"/> must have under the file's settings: an EVA adapter takes the
        /// file's rank (its <c>rank_pattern</c> entry), every other adapter its own.
        /// </summary>
        internal long[] FileShape(string adapter, string name, AdapterSettings file)
        {
            var live = AdapterParameters(adapter).First(p => p.Name == name).Parameter.shape;
            if (OptionsOf(adapter).Init != LoRAInit.Eva || file is not LoRAOptions lora) return live;
            if (name.StartsWith("lora_A.", StringComparison.Ordinal)) return new[] { (long)lora.Rank, InFeatures };
            if (name.StartsWith("lora_B.", StringComparison.Ordinal)) return new[] { OutFeatures, (long)lora.Rank };
            return live;
        }

        /// <summary>The magnitude vector m of a DoRA adapter ([out]).</summary>
        public Parameter Magnitude(string adapter) =>
            IsDora(adapter) ? lora_magnitude_vector[adapter].Weight : throw new InvalidOperationException($"{Site}: adapter '{adapter}' is a LoRA adapter; only DoRA adapters have a magnitude vector");

        /// <summary>Adds a named LoRA adapter, or a DoRA one for <see cref="DoRAOptions"/>; it is checked against the layer's shape first.</summary>
        public void AddAdapter(string adapter, LoRAOptions options)
        {
            bool dora = options.UseDora;
            LoRA.Validate(Site, dora ? "DoRA" : "LoRA", options, InFeatures, OutFeatures);
            var weight = BaseWeight;
            var (a, b) = NewFactors(options.Rank);
            try
            {
                using var scope = NewDisposeScope();
                using var _ = no_grad();
                Tensor? residual = null;
                switch (options.Init)
                {
                    case LoRAInit.PiSSA:
                    case LoRAInit.OLoRA:
                        var (initA, initB, rest) = options.Init == LoRAInit.PiSSA
                            ? LoRAInitialization.PiSSA(weight, options.Rank, options.Scaling)
                            : LoRAInitialization.OLoRA(weight, options.Rank, options.Scaling);
                        a.weight!.copy_(initA);
                        b.weight!.copy_(initB);
                        residual = rest;
                        break;
                    case LoRAInit.Gaussian:
                        nn.init.normal_(a.weight!, 0, 1.0 / options.Rank);
                        nn.init.zeros_(b.weight!);
                        break;
                    default: // Default, and Eva until InitializeEva gives A its data
                        InitDefault(a, b);
                        break;
                }
                RegisterAdapter(adapter, options); // the last check: nothing below fails
                if (options.Init == LoRAInit.Eva) _awaitingEva.Add(adapter);
                if (residual is not null)
                {
                    weight.copy_(residual);
                    _initialFactors[adapter] = (a.weight!.detach().clone().DetachFromDisposeScope(), b.weight!.detach().clone().DetachFromDisposeScope());
                }
            }
            catch
            {
                a.Dispose();
                b.Dispose();
                throw;
            }
            lora_A.Add(adapter, a);
            lora_B.Add(adapter, b);
            if (dora)
            {
                // m starts as the row norms of W + s·B·A (after any residual init), so the layer starts at its base.
                Tensor initial;
                using (var scope = NewDisposeScope())
                using (no_grad())
                    initial = DoRA.RowNorm(weight.add(LoRADelta(adapter))).DetachFromDisposeScope();
                lora_magnitude_vector.Add(adapter, new DoRAMagnitude(initial));
            }
        }

        /// <summary>s·B·A, the low-rank part of an adapter ([out, in]).</summary>
        private Tensor LoRADelta(string adapter) => matmul(LoraB(adapter), LoraA(adapter)).mul(OptionsOf(adapter).Scaling);

        /// <summary>DoRA's g = m / n with n = ‖W + s·B·A‖ per row from the live base weight, without gradient through n.</summary>
        private Tensor DoraFactor(string adapter, Tensor weight)
        {
            using var scope = NewDisposeScope(); // frees the dense [out, in] temporaries at once
            Tensor norm;
            using (no_grad()) norm = DoRA.RowNorm(weight.detach().add(LoRADelta(adapter)));
            return DoRA.Factor(Magnitude(adapter), norm).MoveToOuterDisposeScope();
        }

        /// <summary>
        /// The base output plus each active, unmerged adapter in order. A LoRA adapter adds s·B·A·drop(x). A DoRA
        /// adapter rescales the weight the adapters before it amount to (W alone when it is the first, as PEFT's
        /// formula has it): with W̃ that weight, n = ‖W̃ + s·B·A‖ per row (no gradient) and g = m / n, it adds
        /// (g − 1) ⊙ drop(x)W̃ᵀ + g ⊙ s·B·A·drop(x). Merging folds the adapters in the same order, so the merged layer
        /// computes what this forward computes.
        /// </summary>
        protected override Tensor ForwardActive(Tensor input)
        {
            var adapters = UnmergedActiveAdapters.ToList();
            if (FusedFunctionsApply(adapters))
                return FusedForward(input, adapters);
            FusedKernels.Record(nameof(DoRAFunction), $"{Site}: a DoRA adapter after another adapter rescales a weight that depends on it");
            int lastDora = adapters.FindLastIndex(a => lora_magnitude_vector.Contains(a));
            var result = BaseLayer.forward(input);
            Tensor? weight = null;     // W̃ once an adapter precedes a DoRA adapter; null: the base weight
            bool resultIsExact = true; // result − b == x·W̃ᵀ (no dropout so far), so DoRA needs no second matmul
            for (int i = 0; i < adapters.Count; i++)
            {
                var adapter = adapters[i];
                var options = OptionsOf(adapter);
                bool drop = options.Dropout > 0 && training;
                var x = drop ? nn.functional.dropout(input, options.Dropout, training: true) : input;
                var update = nn.functional.linear(nn.functional.linear(x, LoraA(adapter)), LoraB(adapter));
                if (!lora_magnitude_vector.Contains(adapter))
                {
                    result = result.add(update, alpha: options.Scaling);
                    if (i < lastDora) weight = (weight ?? BaseWeight).add(LoRADelta(adapter));
                }
                else
                {
                    var w = weight ?? BaseWeight;
                    var factor = DoraFactor(adapter, w);
                    var projected = !drop && resultIsExact
                        ? (BaseBias is { } bias ? result.sub(bias) : result)
                        : nn.functional.linear(x, w);
                    result = result.add(DoRA.OutputTerm(factor, projected, update, options.Scaling));
                    if (i < lastDora) weight = factor.unsqueeze(1).mul(w.add(LoRADelta(adapter)));
                }
                resultIsExact &= !drop;
            }
            return result;
        }

        /// <summary>
        /// Whether <see cref="FusedForward"/> computes these adapters: plain LoRA adapters, after at most one DoRA adapter
        /// that comes first (it then rescales the base weight alone). A DoRA adapter after another adapter takes the
        /// composed path.
        /// </summary>
        private bool FusedFunctionsApply(List<string> adapters)
        {
            for (int i = 1; i < adapters.Count; i++)
                if (lora_magnitude_vector.Contains(adapters[i]))
                    return false;
            return true;
        }

        /// <summary>
        /// One fused autograd function per adapter (Kernels/LoRAFunction, Kernels/DoRAFunction); the first also computes
        /// the base layer, later ones add to its output.
        /// </summary>
        private Tensor FusedForward(Tensor input, List<string> adapters)
        {
            Tensor? result = null;
            foreach (var adapter in adapters)
            {
                var options = OptionsOf(adapter);
                double dropout = training ? options.Dropout : 0;
                if (result is null && lora_magnitude_vector.Contains(adapter))
                    result = DoRAFunction.Linear(input, BaseWeight, BaseBias, LoraA(adapter), LoraB(adapter), Magnitude(adapter), options.Scaling, dropout);
                else
                    result = result is null
                        ? LoRAFunction.Linear(input, BaseWeight, BaseBias, LoraA(adapter), LoraB(adapter), options.Scaling, dropout)
                        : LoRAFunction.AddTo(result, input, LoraA(adapter), LoraB(adapter), options.Scaling, dropout);
            }
            return result ?? BaseLayer.forward(input);
        }

        /// <summary>
        /// A mixed batch of plain LoRA adapters (PEFT's <c>_mixed_batch_forward</c>): the base layer once on every row,
        /// then per adapter its rows' thin products s·(drop(x_g)·Aᵀ)·Bᵀ added into those rows of the base output in
        /// place (a slice when the rows are one run, <c>index_add_</c> otherwise). The rows are grouped once per
        /// <see cref="RowRouting"/>, shared by every layer. DoRA adapters take the generic sub-batch path (their output
        /// rescales the base product).
        /// </summary>
        protected override Tensor? ForwardGrouped(Tensor input, RowRouting rows)
        {
            var groups = rows.Groups;
            foreach (var g in groups)
                if (lora_magnitude_vector.Contains(g.Adapter)) return null;
            using var scope = NewDisposeScope();
            if (!training || groups.All(g => !HasAdapter(g.Adapter) || OptionsOf(g.Adapter).Dropout == 0))
            {
                // Inference (nothing needs a gradient): the thin products of each adapter's rows straight into the output
                // buffer, then the base GEMM in place, as the one-adapter forward does.
                var held = groups.Where(g => HasAdapter(g.Adapter))
                    .Select(g => (g.Rows, (Tensor)LoraA(g.Adapter), (Tensor)LoraB(g.Adapter), OptionsOf(g.Adapter).Scaling)).ToList();
                if (LoRAFunction.TryLinearRowGroups(input, BaseWeight, BaseBias, held) is { } fused) return fused.MoveToOuterDisposeScope();
                bool wantsGradient = is_grad_enabled() && (input.requires_grad || held.Any(h => h.Item2.requires_grad || h.Item3.requires_grad));
                FusedKernels.Record("LoRA mixed batch", $"{Site}: " + (wantsGradient
                    ? "a gradient is wanted: the groups' thin products run as libtorch ops (no fused mixed-batch backward)"
                    : FusedKernels.WhyNot(("input", input, false), ("base weight", BaseWeight, true), ("base bias", BaseBias, true)) ?? "the factors cannot be read by the raw loops"));
            }
            else FusedKernels.Record("LoRA mixed batch", $"{Site}: dropout in training: the groups' thin products run as libtorch ops");
            var result = BaseLayer.forward(input);
            for (int i = 0; i < groups.Count; i++)
            {
                var group = groups[i];
                if (!HasAdapter(group.Adapter)) continue;
                var options = OptionsOf(group.Adapter);
                long count = group.Rows.Length;
                var x = group.Contiguous ? input.narrow(0, group.Start, count) : input.index_select(0, rows.Index(i, input.device));
                if (training && options.Dropout > 0) x = nn.functional.dropout(x, options.Dropout, training: true);
                var update = nn.functional.linear(nn.functional.linear(x, LoraA(group.Adapter)), LoraB(group.Adapter));
                if (group.Contiguous) result.narrow(0, group.Start, count).add_(update, alpha: options.Scaling);
                else result.index_add_(0, rows.Index(i, input.device), update, options.Scaling);
            }
            return result.MoveToOuterDisposeScope();
        }

        /// <summary>
        /// The change the adapter makes to the base weight: s·B·A for LoRA; for DoRA g[:, None] ⊙ (W + s·B·A) − W with
        /// W the current base weight, as if it were the only adapter applied (so it is only defined while the DoRA
        /// adapter is not merged).
        /// </summary>
        public override Tensor DeltaWeight(string adapter)
        {
            RequireAdapter(adapter);
            if (!lora_magnitude_vector.Contains(adapter)) return LoRADelta(adapter);
            if (MergedAdapters.Contains(adapter))
                throw new InvalidOperationException($"{Site}: DoRA adapter '{adapter}' is merged; its delta weight depends on the unmerged base weight, so unmerge it first");
            using var scope = NewDisposeScope();
            var weight = BaseWeight.detach();
            var factor = DoraFactor(adapter, weight);
            return factor.unsqueeze(1).mul(weight.add(LoRADelta(adapter))).sub(weight).MoveToOuterDisposeScope();
        }

        /// <inheritdoc />
        protected override void MergeInto(Tensor weight, Tensor? bias, string adapter)
        {
            if (!lora_magnitude_vector.Contains(adapter))
            {
                base.MergeInto(weight, bias, adapter);
                return;
            }
            // n is taken from the weight being merged into and g is kept for unmerge (the bias is not rescaled).
            var record = DoRA.MergeInPlace(weight, LoRADelta(adapter), Magnitude(adapter));
            if (_doraMerges.Remove(adapter, out var previous)) previous.Dispose();
            _doraMerges[adapter] = record;
        }

        /// <inheritdoc />
        protected override void UnmergeFrom(Tensor weight, Tensor? bias, string adapter)
        {
            if (!lora_magnitude_vector.Contains(adapter))
            {
                base.UnmergeFrom(weight, bias, adapter);
                return;
            }
            if (!_doraMerges.Remove(adapter, out var record))
                throw new InvalidOperationException($"{Site}: DoRA adapter '{adapter}' has no record of its merge");
            using (record) DoRA.UnmergeInPlace(weight, LoRADelta(adapter), record);
        }

        /// <summary>
        /// Checks that a file's settings fit the adapter: a LoRA config, <c>use_dora</c> matching the adapter's kind,
        /// the same rank, and, where an init changed the base weight (PiSSA, OLoRA), the same init (and for OLoRA the
        /// same scaling), since the file's factors are relative to that residual base weight.
        /// </summary>
        public override void ValidateSettings(string adapter, AdapterSettings settings)
        {
            var current = Options(adapter);
            bool dora = IsDora(adapter);
            string kind = dora ? "DoRA" : "LoRA";
            if (settings is not LoRAOptions lora || lora.UseDora != dora)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' is a {kind} adapter; the file describes {Describe(settings)}");
            if (current.Init == LoRAInit.Eva)
            {
                // EVA redistributes ranks: the file's rank (its rank_pattern entry) replaces the declared one.
                long max = Math.Min(InFeatures, OutFeatures);
                if (lora.Rank < 1 || lora.Rank > max)
                    throw new InvalidOperationException($"{Site}: EVA adapter '{adapter}' can take a rank from 1 to {max} from the file; the file has rank {lora.Rank}");
            }
            else if (lora.Rank != current.Rank)
                throw new InvalidOperationException($"{Site}: adapter '{adapter}' has rank {current.Rank}; the file has rank {lora.Rank}");
            bool changesBase = LoRAInitialization.ChangesBaseWeight(current.Init) || LoRAInitialization.ChangesBaseWeight(lora.Init);
            if (changesBase && lora.Init != current.Init)
                throw new InvalidOperationException(
                    $"{Site}: adapter '{adapter}' was initialised with {current.Init}; the file's adapter with {lora.Init} " +
                    "(PiSSA and OLoRA replace the base weight by a residual, so the factors only fit the same init)");
            if (current.Init == LoRAInit.OLoRA)
            {
                double scaling = (current with { Alpha = lora.Alpha, UseRsLora = lora.UseRsLora }).Scaling;
                if (scaling != current.Scaling)
                    throw new InvalidOperationException(
                        $"{Site}: OLoRA adapter '{adapter}' has scaling {current.Scaling}; the file's has {scaling} (its residual base weight W − s·B₀·A₀ depends on it)");
            }
        }

        /// <inheritdoc />
        public override void ApplySettings(string adapter, AdapterSettings settings)
        {
            ValidateSettings(adapter, settings);
            var lora = (LoRAOptions)settings;
            if (OptionsOf(adapter).Init == LoRAInit.Eva)
            {
                Resize(adapter, lora.Rank); // the loaded factors are copied in next
                SetOptions(adapter, OptionsOf(adapter) with { Rank = lora.Rank });
                _awaitingEva.Remove(adapter);
            }
            SetOptions(adapter, OptionsOf(adapter) with { Alpha = lora.Alpha, Dropout = lora.Dropout, UseRsLora = lora.UseRsLora });
        }

        internal static string Describe(AdapterSettings settings) => settings switch
        {
            LoRAOptions { UseDora: true } => "a DoRA adapter (use_dora: true)",
            LoRAOptions => "a LoRA adapter (use_dora: false)",
            _ => $"a {settings.PeftType} adapter",
        };

        /// <inheritdoc />
        protected override void RemoveAdapterParameters(string adapter)
        {
            base.RemoveAdapterParameters(adapter);
            _awaitingEva.Remove(adapter);
            if (_doraMerges.Remove(adapter, out var record)) record.Dispose();
            if (_initialFactors.Remove(adapter, out var initial))
            {
                initial.A.Dispose();
                initial.B.Dispose();
            }
        }

        /// <summary>
        /// The adapter as a plain LoRA relative to the <b>original</b> base weight, PEFT's conversion of PiSSA / OLoRA
        /// (<c>save_pretrained(path_initial_model_for_weight_conversion=...)</c>): with A₀, B₀ the factors the init
        /// started from, A' = [A; A₀] ([2r, in]), B' = [B, −B₀] ([out, 2r]), rank 2r and alpha 2·alpha (alpha·√2 with
        /// rsLoRA), so s'·B'·A' = s·(B·A − B₀·A₀): the residual base plus the adapter equals the original weight plus
        /// this update. Adapters whose init left the base alone are returned as they are. DoRA adapters with such an
        /// init cannot be converted (the magnitude rescales the residual, which a plain LoRA cannot express).
        /// </summary>
        /// <returns>The tensors by in-memory name (as <see cref="AdapterLayerBase.AdapterParameters"/> names them) and the settings.</returns>
        public (IReadOnlyList<(string Name, Tensor Tensor)> Tensors, LoRAOptions Settings) AsPlainLoRA(string adapter)
        {
            var settings = Options(adapter);
            if (!_initialFactors.TryGetValue(adapter, out var initial))
                return (AdapterParameters(adapter).Select(p => (p.Name, (Tensor)p.Parameter.detach())).ToList(), settings);
            if (IsDora(adapter))
                throw new InvalidOperationException(
                    $"{Site}: DoRA adapter '{adapter}' was initialised with {settings.Init}; it cannot be saved as a plain LoRA on the original base weight, only relative to the residual");
            using var scope = NewDisposeScope();
            var a = cat(new[] { LoraA(adapter).detach(), initial.A }, 0).MoveToOuterDisposeScope();
            var b = cat(new[] { LoraB(adapter).detach(), initial.B.neg() }, 1).MoveToOuterDisposeScope();
            double alpha = settings.UseRsLora ? settings.Alpha * Math.Sqrt(2) : settings.Alpha * 2;
            return (new List<(string, Tensor)> { ($"lora_A.{adapter}.weight", a), ($"lora_B.{adapter}.weight", b) },
                    settings with { Rank = 2 * settings.Rank, Alpha = alpha, Init = LoRAInit.Default });
        }
    }

    /// <summary>The entry point generated code calls for <c>[LoRA]</c>.</summary>
    public static class LoRA
    {
        /// <summary>
        /// Wraps <paramref name="layer"/> in a <see cref="LoRALinear"/> with adapter <paramref name="adapter"/>, or adds
        /// the adapter to it if it already is one. Checks the rank against the layer's real shape, with the
        /// analyzers' wording.
        /// </summary>
        /// <param name="layer">The member's current value: a <c>Linear</c>, or a <see cref="LoRALinear"/> already.</param>
        /// <param name="site">Class and member, e.g. <c>Demo.Block.q</c>.</param>
        /// <param name="adapter">The adapter name.</param>
        /// <param name="options">The declared options.</param>
        public static nn.Module<Tensor, Tensor> Wrap(nn.Module<Tensor, Tensor>? layer, string site, string adapter, LoRAOptions options) =>
            AdapterWrap.Linear<LoRALinear>(layer, site, "LoRA", existing => existing.AddAdapter(adapter, options), linear => new LoRALinear(site, linear, adapter, options));

        internal static void Validate(string site, string method, LoRAOptions options, long inFeatures, long outFeatures)
        {
            AdapterChecks.RankWithinLayer(site, method, options.Rank, inFeatures, outFeatures);
            AdapterChecks.Dropout(site, options.Dropout);
            if (!Enum.IsDefined(options.Init))
                throw new ArgumentException(PeftMessages.Format(PeftMessages.UnknownLoRAInit, site, method, (int)options.Init));
            if (options.Init == LoRAInit.Eva && options.UseDora)
                throw new ArgumentException($"{site}: DoRA cannot start from EVA's init (its magnitude is taken from the weight before the data is seen); use [LoRA(rank, Init = LoRAInit.Eva)]");
        }
    }

    /// <summary>
    /// The options of one LoRA adapter, as <c>[LoRA]</c> declares them (the same defaults), and its entry in PEFT's
    /// <c>LoraConfig</c>. <see cref="DoRAOptions"/> derives from it: a DoRA adapter is a LoRA adapter with a magnitude
    /// vector (PEFT's <c>use_dora</c>).
    /// </summary>
    public record LoRAOptions : AdapterSettings
    {
        /// <summary>The rank r (PEFT's <c>r</c>).</summary>
        public int Rank { get; init; } = 8;

        /// <summary>PEFT's <c>lora_alpha</c>; the update is scaled by Alpha / r (Alpha / √r with <see cref="UseRsLora"/>).</summary>
        public double Alpha { get; init; } = 8;

        /// <summary>Dropout probability on the adapter input (PEFT's <c>lora_dropout</c>).</summary>
        public double Dropout { get; init; }

        /// <summary>Rank-stabilised scaling Alpha / √r.</summary>
        public bool UseRsLora { get; init; }

        /// <summary>How A and B start.</summary>
        public LoRAInit Init { get; init; } = LoRAInit.Default;

        /// <summary>The factor applied to B·A.</summary>
        public double Scaling => UseRsLora ? Alpha / System.Math.Sqrt(Rank) : Alpha / Rank;

        /// <summary>PEFT's <c>use_dora</c>: true for <see cref="DoRAOptions"/>.</summary>
        public virtual bool UseDora => false;

        /// <inheritdoc />
        public override string PeftType => "LORA";

        /// <inheritdoc />
        public override IReadOnlyDictionary<string, double> PerLayerFields => new Dictionary<string, double>
        {
            ["r"] = Rank,
            ["lora_alpha"] = Alpha,
        };

        /// <inheritdoc />
        public override void WriteSharedFields(JsonObject config)
        {
            config["lora_dropout"] = AdapterConfig.Float(Dropout);
            config["use_rslora"] = UseRsLora;
            config["use_dora"] = UseDora;
            config["fan_in_fan_out"] = false;
            config["bias"] = "none";
            // PEFT writes true for its default init and a string for the others ("gaussian", "pissa", "olora"). EVA's
            // factors sit on the unchanged base, so its file is written as a plain LoRA (true, no eva_config), which any
            // PEFT reads; PEFT's own "eva" and eva_config are read too.
            config["init_lora_weights"] = Init is LoRAInit.Default or LoRAInit.Eva ? JsonValue.Create(true) : JsonValue.Create(LoRAInitialization.ConfigValue(Init));
        }

        /// <summary>Reads the fields of a LoRA config that apply to the layer at <paramref name="modulePath"/> (a <see cref="DoRAOptions"/> with <c>use_dora</c>).</summary>
        public static AdapterSettings FromConfig(JsonObject config, string modulePath, string file)
        {
            // PEFT's LoraConfig defaults: r = 8, lora_alpha = 8.
            int rank = checked((int)AdapterConfig.PerLayer(config, "r", modulePath, file, fallback: 8));
            double alpha = AdapterConfig.PerLayer(config, "lora_alpha", modulePath, file, fallback: 8);
            bool useRsLora = config["use_rslora"]?.GetValue<bool>() ?? false;
            bool useDora = config["use_dora"]?.GetValue<bool>() ?? false;
            double dropout = AdapterConfig.Probability(config, "lora_dropout", file);
            var init = ReadInit(config, file);
            var kind = useDora ? new DoRAOptions() : new LoRAOptions();
            return kind with { Rank = rank, Alpha = alpha, Dropout = dropout, UseRsLora = useRsLora, Init = init };
        }

        /// <summary>
        /// PEFT's <c>init_lora_weights</c>: <c>true</c> / <c>false</c> and inits that leave the base weight alone
        /// (<c>"eva"</c>, <c>"orthogonal"</c>, ...) read as <see cref="LoRAInit.Default"/> (after loading, only the
        /// factors matter; an adapter declared with <see cref="LoRAInit.Eva"/> takes the file's per-layer ranks either way); <c>"pissa"</c> and <c>"pissa_niter_N"</c> as PiSSA, <c>"olora"</c> as OLoRA. Inits that
        /// change the base weight in a way this library does not reproduce (<c>"corda"</c>, <c>"loftq"</c>,
        /// <c>"lora_ga"</c>) are refused: their factors fit only that changed base weight.
        /// </summary>
        private static LoRAInit ReadInit(JsonObject config, string file)
        {
            if (config["init_lora_weights"] is not JsonValue v || !v.TryGetValue<string>(out var text)) return LoRAInit.Default;
            string init = text.ToLowerInvariant();
            if (init == "gaussian") return LoRAInit.Gaussian;
            if (init.StartsWith("pissa", System.StringComparison.Ordinal)) return LoRAInit.PiSSA;
            if (init == "olora") return LoRAInit.OLoRA;
            if (init.StartsWith("corda", System.StringComparison.Ordinal) || init == "loftq" || init == "lora_ga")
                throw new System.IO.InvalidDataException(
                    $"{file}: init_lora_weights '{text}' changes the base weights in a way PeftDsl does not reproduce; " +
                    "convert the adapter to a plain LoRA in PEFT (save_pretrained with path_initial_model_for_weight_conversion)");
            return LoRAInit.Default;
        }
    }
}

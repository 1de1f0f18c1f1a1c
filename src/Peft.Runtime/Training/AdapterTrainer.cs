using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using Peft.Runtime.Distributed;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Training
{
    /// <summary>
    /// One optimizer step at a time, guarded: the loss is checked before <c>backward</c> and the gradients before the
    /// optimizer runs, so a NaN or ±Inf stops training with a <see cref="NonFiniteLossException"/> naming the step
    /// (and the parameter, for a gradient) instead of writing NaN into the adapter. After such a stop the parameters
    /// and the optimizer's state are exactly those after the last good step: save them, lower the learning rate, or
    /// look at the batch. On a <c>[PeftModel]</c> with adaptive-rank adapters (AdaLoRA) each step also adds their
    /// regulariser to the loss and runs <c>UpdateAndAllocate</c> after the optimizer step (0-based step index).
    /// </summary>
    /// <example>
    /// <code>
    /// var trainer = new AdapterTrainer(model, optim.AdamW(model.TrainableParameters(), 1e-3)) { Name = "LoRA fine-tune" };
    /// for (int i = 0; i &lt; steps; i++)
    ///     trainer.Step(() =&gt; functional.cross_entropy(model.forward(x), y));
    /// </code>
    /// </example>
    /// <remarks>
    /// Data-parallel (one process per rank, launched by <c>mpirun</c>): set <see cref="Communicator"/>. Before the first
    /// step the trainable parameters are broadcast from rank 0; after each backward their gradients are averaged across
    /// ranks in one flat bucket (frozen parameters never cross the wire); the NaN/Inf guard decides on every rank alike,
    /// naming the rank whose loss or gradient was bad; <see cref="SaveAdapters"/> writes on rank 0 only.
    /// </remarks>
    public sealed class AdapterTrainer
    {
        private readonly nn.Module _model;
        private readonly optim.Optimizer _optimizer;

        /// <summary>A trainer for <paramref name="model"/>'s trainable parameters, stepped by <paramref name="optimizer"/>.</summary>
        /// <param name="model">The model; the gradients of its parameters that require one are checked every step.</param>
        /// <param name="optimizer">An optimizer over the model's trainable parameters (usually <c>model.TrainableParameters()</c>).</param>
        public AdapterTrainer(nn.Module model, optim.Optimizer optimizer)
        {
            _model = model ?? throw new ArgumentNullException(nameof(model));
            _optimizer = optimizer ?? throw new ArgumentNullException(nameof(optimizer));
        }

        /// <summary>What is being trained, for messages (<c>"LoRA fine-tune"</c>).</summary>
        public string Name { get; init; } = "training";

        /// <summary>When set, gradients are clipped to this total L2 norm before each optimizer step.</summary>
        public double? MaxGradNorm { get; init; }

        /// <summary>The number of steps that completed (whose update was applied).</summary>
        public int CompletedSteps { get; private set; }

        /// <summary>
        /// The ranks this trainer trains with, each on its own batches; <see langword="null"/> (the default) trains in
        /// this process alone. Set it before the first step, on every rank, usually to
        /// <c>Communicator.FromEnvironment()</c>. Every rank must then call <see cref="Step"/> the same number of times
        /// with a loss that is a mean over its batch (equal batch sizes make the averaged gradient that of the
        /// concatenated batch), and its model's frozen parameters must equal rank 0's (same seed or same checkpoint).
        /// </summary>
        public ICommunicator? Communicator
        {
            get => _communicator;
            set
            {
                if (CompletedSteps > 0 && !ReferenceEquals(value, _communicator))
                    throw new InvalidOperationException($"{Name}: set Communicator before the first step; {CompletedSteps} steps already ran without it.");
                _communicator = value;
                _buckets = null;
            }
        }

        private ICommunicator? _communicator;
        private GradientBuckets? _buckets;

        /// <summary>
        /// Runs one step: zeroes the gradients, computes the loss with <paramref name="computeLoss"/>, checks it, runs
        /// <c>backward</c>, checks every gradient, clips (when <see cref="MaxGradNorm"/> is set) and steps the
        /// optimizer. Where the model holds adapter layers with a regulariser (<see cref="IAdapterRegularizer"/>: SaRA's
        /// nuclear norm), one layer's term per step, in turn, is added to the loss first, and the returned loss includes
        /// it; after the step it tells the model's step-scheduled adapters (<see cref="AdapterSchedule"/>: LaMDA's freezing
        /// of B). Tensors made inside <paramref name="computeLoss"/> are disposed when the step ends.
        /// </summary>
        /// <returns>The step's loss; with a <see cref="Communicator"/>, the mean of every rank's loss.</returns>
        /// <exception cref="NonFiniteLossException">The loss or a gradient is NaN or ±Inf; nothing was updated.</exception>
        public double Step(Func<Tensor> computeLoss)
        {
            ArgumentNullException.ThrowIfNull(computeLoss);
            if (CompletedSteps == 0) RequireEvaInitialised();
            if (_communicator is { } communicator) return DistributedStep(computeLoss, communicator);
            int step = CompletedSteps + 1;
            using var scope = NewDisposeScope();
            _optimizer.zero_grad();
            var loss = Loss(computeLoss, step);
            double value = loss.to(ScalarType.Float64).item<double>();
            if (!double.IsFinite(value))
                throw new NonFiniteLossException(
                    $"{Name}: the loss is {Show(value)} at step {step}; stopped before backward and the optimizer step, so the parameters are those after step {step - 1}. " +
                    "Lower the learning rate, set MaxGradNorm, or check this step's batch.",
                    step, value, parameter: null);

            loss.backward();
            string? bad = FirstNonFiniteGradient();
            if (bad is not null)
            {
                _optimizer.zero_grad();
                throw new NonFiniteLossException(
                    $"{Name}: the gradient of '{bad}' holds NaN or Inf at step {step} (loss {value.ToString("G6", CultureInfo.InvariantCulture)}); " +
                    $"stopped before the optimizer step, so the parameters are those after step {step - 1}. Lower the learning rate or set MaxGradNorm.",
                    step, value, bad);
            }
            if (MaxGradNorm is double max)
                nn.utils.clip_grad_norm_(TrainableParameters().Select(p => p.Parameter), max);
            _optimizer.step();
            AfterOptimizerStep(step);
            return value;
        }

        /// <summary>
        /// Writes the model's adapters in PEFT's format (<see cref="IPeftModel.SaveAdapters"/>), on rank 0 only when a
        /// <see cref="Communicator"/> is set: every rank waits at a barrier before (so the save holds the same step on
        /// all) and after (so no rank goes on, or reads the files, before they are written). The save is journaled, so a
        /// rank 0 killed mid-save leaves the previous adapter whole on disk.
        /// </summary>
        /// <exception cref="InvalidOperationException">The model is not a <c>[PeftModel]</c>.</exception>
        public void SaveAdapters(string directory)
        {
            ArgumentException.ThrowIfNullOrEmpty(directory);
            var peft = _model as IPeftModel
                ?? throw new InvalidOperationException($"{Name}: {_model.GetType().Name} is not a [PeftModel], so it has no adapters to save.");
            if (_communicator is not { } communicator)
            {
                peft.SaveAdapters(directory);
                return;
            }
            communicator.Barrier();
            if (communicator.Rank == 0) peft.SaveAdapters(directory);
            communicator.Barrier();
        }

        private double DistributedStep(Func<Tensor> computeLoss, ICommunicator communicator)
        {
            int step = CompletedSteps + 1, size = communicator.Size, rank = communicator.Rank;
            using var scope = NewDisposeScope();
            var trainable = TrainableParameters().ToList();
            if (_buckets is null || !_buckets.Matches(trainable))
            {
                // First step, or the trainable set changed: rebuild the buckets and start every rank from rank 0's values.
                _buckets?.Dispose();
                _buckets = new GradientBuckets(trainable, statusSlots: 2 * size, Name);
                _buckets.BroadcastParameters(communicator, Name);
            }
            var buckets = _buckets;

            _optimizer.zero_grad();
            var loss = Loss(computeLoss, step);
            double value = loss.to(ScalarType.Float64).item<double>();
            bool lossFinite = double.IsFinite(value);
            // A bad loss skips backward here but still joins the all-reduce below, so every rank learns of it at once.
            if (lossFinite) loss.backward();
            buckets.PackGradients();
            bool gradientsFinite = !lossFinite || buckets.GradientsFinite();
            string? localBad = gradientsFinite ? null : FirstNonFiniteGradient();
            // Status slots, summed over ranks: [0, size) each rank's loss, [size, 2·size) each rank's bad-gradient flag.
            var status = new double[2 * size];
            status[rank] = value;
            status[size + rank] = gradientsFinite ? 0 : 1;
            buckets.SetStatus(status);
            buckets.AllReduceMean(communicator);
            double[] all = buckets.Status().Select(s => s * size).ToArray();

            var badLoss = Enumerable.Range(0, size).Where(r => !double.IsFinite(all[r])).ToList();
            if (badLoss.Count > 0)
            {
                _optimizer.zero_grad();
                int first = badLoss[0];
                double shown = first == rank ? value : all[first];
                throw new NonFiniteLossException(
                    $"{Name}: the loss is {Show(shown)} on rank {Ranks(badLoss)} of {size} at step {step}; stopped on every rank before the optimizer step, so the parameters are those after step {step - 1}. " +
                    "Lower the learning rate, set MaxGradNorm, or check this step's batch on that rank.",
                    step, shown, parameter: null, rank: first);
            }
            double mean = all.Take(size).Average();
            var badGradient = Enumerable.Range(0, size).Where(r => all[size + r] > 0).ToList();
            if (badGradient.Count > 0 || !buckets.GradientsFinite()) // the averaged gradients, now
            {
                _optimizer.zero_grad();
                int? first = badGradient.Count > 0 ? badGradient[0] : null;
                string where = first is null ? "the averaged gradient holds NaN or Inf (each rank's was finite: the sum overflowed)"
                    : localBad is not null ? $"the gradient of '{localBad}' holds NaN or Inf on rank {Ranks(badGradient)} of {size}"
                    : $"a gradient holds NaN or Inf on rank {Ranks(badGradient)} of {size} (that rank's message names the parameter)";
                throw new NonFiniteLossException(
                    $"{Name}: {where} at step {step} (mean loss {mean.ToString("G6", CultureInfo.InvariantCulture)}); " +
                    $"stopped on every rank before the optimizer step, so the parameters are those after step {step - 1}. Lower the learning rate or set MaxGradNorm.",
                    step, mean, localBad, first);
            }
            buckets.UnpackGradients();
            if (MaxGradNorm is double max)
                nn.utils.clip_grad_norm_(trainable.Select(p => p.Parameter), max);
            _optimizer.step();
            AfterOptimizerStep(step);
            return mean;
        }

        /// <summary>
        /// The step's loss, plus the term of adapters with a regulariser (SaRA's nuclear norm): one layer's term per step,
        /// in turn, as SaRA's paper picks one layer per step to keep the SVDs cheap.
        /// </summary>
        private Tensor Loss(Func<Tensor> computeLoss, int step)
        {
            var loss = computeLoss();
            if (loss.numel() != 1)
                throw new ArgumentException($"{Name}: the loss must be one number, got a tensor of shape [{string.Join(", ", loss.shape)}]", nameof(computeLoss));
            var regularizers = _model.modules().Prepend(_model).Distinct().OfType<IAdapterRegularizer>().ToList();
            if (regularizers.Count > 0 && regularizers[(step - 1) % regularizers.Count].RegularizationLoss() is { } term)
                loss = loss.reshape(Array.Empty<long>()) + term;
            // Adaptive-rank adapters (AdaLoRA) carry a regulariser, added to the loss as PEFT's model adds it.
            if (_model is IPeftModel peft && peft.OrthogonalRegularization() is { } regularization)
                loss = loss.add(regularization.to(loss.dtype));
            return loss;
        }

        /// <summary>
        /// What follows every applied update, on every rank alike (the gradients are the averaged ones): adaptive-rank
        /// adapters allocate with this step's gradients (0-based step index).
        /// </summary>
        private void AfterOptimizerStep(int step)
        {
            if (_model is IPeftModel allocating) allocating.UpdateAndAllocate(step - 1);
            CompletedSteps = step;
            AdapterSchedule.AfterOptimizerStep(_model, step); // LaMDA's freezing and any other per-step schedule
        }

        private static string Ranks(List<int> ranks) => string.Join(", ", ranks);

        /// <summary>
        /// Refuses to start on an adapter declared with <c>LoRAInit.Eva</c> whose data-driven init never ran: its A would be
        /// the random placeholder and its rank the declared one, not EVA's.
        /// </summary>
        private void RequireEvaInitialised()
        {
            foreach (var (path, module) in _model.named_modules())
                if (module is Adapters.LoRALinear lora)
                    foreach (var adapter in lora.AdapterNames)
                        if (lora.AwaitsEva(adapter))
                            throw new InvalidOperationException(
                                $"{Name}: layer '{path}' ({lora.Site}) holds adapter '{adapter}' declared with LoRAInit.Eva, which was never initialised; " +
                                "call the model's InitializeEva(batches) (or load a saved adapter) before training, and create the optimizer after it (EVA changes the ranks)");
        }

        private IEnumerable<(string Name, Parameter Parameter)> TrainableParameters() =>
            _model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => (p.name, p.parameter));

        private string? FirstNonFiniteGradient()
        {
            var withGrad = TrainableParameters().Where(p => p.Parameter.grad is not null).ToList();
            if (withGrad.Count == 0) return null;
            using var scope = NewDisposeScope();
            // One synchronisation for all parameters; the per-parameter look-up runs only on failure.
            var finite = stack(withGrad.Select(p => isfinite(p.Parameter.grad!).all()).ToArray());
            if (finite.all().item<bool>()) return null;
            bool[] each = finite.data<bool>().ToArray();
            return withGrad[Array.IndexOf(each, false)].Name;
        }

        private static string Show(double value) =>
            double.IsNaN(value) ? "NaN" : value > 0 ? "+Inf" : "-Inf";
    }
}

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
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
    /// look at the batch.
    /// </summary>
    /// <example>
    /// <code>
    /// var trainer = new AdapterTrainer(model, optim.AdamW(model.TrainableParameters(), 1e-3)) { Name = "LoRA fine-tune" };
    /// for (int i = 0; i &lt; steps; i++)
    ///     trainer.Step(() =&gt; functional.cross_entropy(model.forward(x), y));
    /// </code>
    /// </example>
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
        /// Runs one step: zeroes the gradients, computes the loss with <paramref name="computeLoss"/>, checks it, runs
        /// <c>backward</c>, checks every gradient, clips (when <see cref="MaxGradNorm"/> is set) and steps the
        /// optimizer, then tells the model's step-scheduled adapters (<see cref="AdapterSchedule"/>: LaMDA's freezing of B).
        /// Tensors made inside <paramref name="computeLoss"/> are disposed when the step ends.
        /// </summary>
        /// <returns>The step's loss.</returns>
        /// <exception cref="NonFiniteLossException">The loss or a gradient is NaN or ±Inf; nothing was updated.</exception>
        public double Step(Func<Tensor> computeLoss)
        {
            ArgumentNullException.ThrowIfNull(computeLoss);
            int step = CompletedSteps + 1;
            using var scope = NewDisposeScope();
            _optimizer.zero_grad();
            var loss = computeLoss();
            if (loss.numel() != 1)
                throw new ArgumentException($"{Name}: the loss must be one number, got a tensor of shape [{string.Join(", ", loss.shape)}]", nameof(computeLoss));
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
            CompletedSteps = step;
            AdapterSchedule.AfterOptimizerStep(_model, step); // LaMDA's freezing and any other per-step schedule
            return value;
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

using System;

namespace Peft.Runtime.Training
{
    /// <summary>
    /// Thrown by <see cref="AdapterTrainer.Step(Func{TorchSharp.torch.Tensor})"/> when a step's loss or gradients are
    /// NaN or ±Inf. The step was stopped before the optimizer ran, so the parameters (and the optimizer's state) are
    /// those after the last good step.
    /// </summary>
    public sealed class NonFiniteLossException : InvalidOperationException
    {
        /// <summary>Creates the exception for step <paramref name="step"/>.</summary>
        public NonFiniteLossException(string message, int step, double loss, string? parameter)
            : this(message, step, loss, parameter, rank: null)
        {
        }

        /// <summary>Creates the exception for step <paramref name="step"/> of a data-parallel run, where rank <paramref name="rank"/> was bad.</summary>
        public NonFiniteLossException(string message, int step, double loss, string? parameter, int? rank)
            : base(message)
        {
            Step = step;
            Loss = loss;
            Parameter = parameter;
            Rank = rank;
        }

        /// <summary>In data-parallel training, the (first) rank whose loss or gradient was not finite; otherwise <see langword="null"/>.</summary>
        public int? Rank { get; }

        /// <summary>The 1-based step whose loss or gradients were not finite.</summary>
        public int Step { get; }

        /// <summary>The step's loss (NaN or ±Inf when the loss itself was the problem).</summary>
        public double Loss { get; }

        /// <summary>The first parameter whose gradient held NaN or ±Inf, or <see langword="null"/> when the loss did.</summary>
        public string? Parameter { get; }
    }
}

using System;
using TorchSharp;

namespace Peft.Runtime.Distributed
{
    /// <summary>
    /// A job of one process: rank 0 of 1, every collective a no-op (the mean of one tensor is itself). What
    /// <see cref="Communicator.FromEnvironment"/> returns outside <c>mpirun</c>, so one program runs either way.
    /// </summary>
    public sealed class SingleProcessCommunicator : ICommunicator
    {
        /// <summary>The one instance; it holds no state.</summary>
        public static SingleProcessCommunicator Instance { get; } = new();

        /// <inheritdoc/>
        public int Rank => 0;

        /// <inheritdoc/>
        public int Size => 1;

        /// <inheritdoc/>
        public void AllReduceMean(torch.Tensor tensor) => ArgumentNullException.ThrowIfNull(tensor);

        /// <inheritdoc/>
        public void Broadcast(torch.Tensor tensor, int root)
        {
            ArgumentNullException.ThrowIfNull(tensor);
            if (root != 0) throw new ArgumentOutOfRangeException(nameof(root), root, "a single-process job has rank 0 only");
        }

        /// <inheritdoc/>
        public void Barrier() { }
    }
}

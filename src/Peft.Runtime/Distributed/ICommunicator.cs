using TorchSharp;

namespace Peft.Runtime.Distributed
{
    /// <summary>
    /// The collective operations data-parallel adapter training needs, over the processes of one job (one per rank).
    /// Every rank must call the same operations in the same order with tensors of the same shape and dtype; a rank that
    /// calls something else, or stops, leaves the others waiting (<c>mpirun --timeout</c> bounds that).
    /// </summary>
    public interface ICommunicator
    {
        /// <summary>This process's index in the job, 0 ≤ <see cref="Rank"/> &lt; <see cref="Size"/>.</summary>
        int Rank { get; }

        /// <summary>The number of processes in the job (the world size).</summary>
        int Size { get; }

        /// <summary>Replaces <paramref name="tensor"/>, in place, with the element-wise mean of every rank's tensor.</summary>
        void AllReduceMean(torch.Tensor tensor);

        /// <summary>Replaces <paramref name="tensor"/>, in place, on every rank with rank <paramref name="root"/>'s.</summary>
        void Broadcast(torch.Tensor tensor, int root);

        /// <summary>Returns once every rank has called it.</summary>
        void Barrier();
    }
}

using System;
using System.Collections.Generic;

namespace Peft.Runtime.Distributed
{
    /// <summary>
    /// Splits one stream of batches among the ranks: rank r takes batches r, r + N, r + 2N, ... of a sequence every rank
    /// produces identically (the same data, the same seed), so step s of rank r trains on batch s·N + r, and the ranks
    /// together see exactly the batches one process would see in N steps — deterministic given the seed.
    /// </summary>
    public static class DataSharding
    {
        /// <summary>Whether the batch at <paramref name="batchIndex"/> (0-based) is rank <paramref name="rank"/>'s among <paramref name="size"/> ranks.</summary>
        public static bool IsMine(long batchIndex, int rank, int size)
        {
            Validate(rank, size);
            ArgumentOutOfRangeException.ThrowIfNegative(batchIndex);
            return batchIndex % size == rank;
        }

        /// <summary>The batch index that rank <paramref name="rank"/> trains on at 0-based step <paramref name="step"/>.</summary>
        public static long BatchIndex(long step, int rank, int size)
        {
            Validate(rank, size);
            ArgumentOutOfRangeException.ThrowIfNegative(step);
            return step * size + rank;
        }

        /// <summary>Every <paramref name="size"/>-th batch of <paramref name="batches"/>, from the <paramref name="rank"/>-th on.</summary>
        public static IEnumerable<T> Shard<T>(this IEnumerable<T> batches, int rank, int size)
        {
            ArgumentNullException.ThrowIfNull(batches);
            Validate(rank, size);
            return Iterate(batches, rank, size);
        }

        /// <summary>This rank's share of <paramref name="batches"/>: <see cref="Shard{T}(IEnumerable{T}, int, int)"/> with the communicator's rank and size.</summary>
        public static IEnumerable<T> Shard<T>(this IEnumerable<T> batches, ICommunicator communicator)
        {
            ArgumentNullException.ThrowIfNull(communicator);
            return batches.Shard(communicator.Rank, communicator.Size);
        }

        /// <summary>
        /// Draws the next step's batch for this rank from a generator every rank runs with the same seed: calls
        /// <paramref name="next"/> <see cref="ICommunicator.Size"/> times and keeps the <see cref="ICommunicator.Rank"/>-th,
        /// passing the others to <paramref name="discard"/> (to dispose tensors).
        /// </summary>
        public static T NextShard<T>(Func<T> next, ICommunicator communicator, Action<T>? discard = null)
        {
            ArgumentNullException.ThrowIfNull(next);
            ArgumentNullException.ThrowIfNull(communicator);
            T mine = default!;
            for (int r = 0; r < communicator.Size; r++)
            {
                T batch = next();
                if (r == communicator.Rank) mine = batch;
                else discard?.Invoke(batch);
            }
            return mine;
        }

        private static IEnumerable<T> Iterate<T>(IEnumerable<T> batches, int rank, int size)
        {
            long index = 0;
            foreach (var batch in batches)
                if (index++ % size == rank) yield return batch;
        }

        private static void Validate(int rank, int size)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
            if (rank < 0 || rank >= size) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"rank must be 0 to {size - 1}");
        }
    }
}

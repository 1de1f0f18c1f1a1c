using System;
using System.Threading.Tasks;
using TorchSharp;

namespace Peft.Runtime.Kernels
{
    /// <summary>
    /// How the fused kernels share a hand-written pass between threads: how many workers a pass gets, and the pass cut
    /// into spans that go to whichever worker asks next.
    /// </summary>
    /// <remarks>
    /// Spans, not fixed halves: right after a GEMM libgomp's worker may still hold the other core, and a .NET worker
    /// given a fixed half there would make the caller wait; with spans the caller simply does more of them.
    /// </remarks>
    internal static class KernelWorkers
    {
        /// <summary>
        /// libtorch's intra-op thread count for <paramref name="work"/> from <paramref name="threshold"/> up, or from
        /// <paramref name="shortSpinThreshold"/> up once libgomp's idle workers sleep soon (<see cref="Native.OpenMpTuning"/>);
        /// the calling thread alone below.
        /// </summary>
        internal static int Count(long work, long threshold, long shortSpinThreshold) =>
            work >= (Native.OpenMpTuning.ShortSpin ? shortSpinThreshold : threshold) ? torch.get_num_threads() : 1;

        /// <summary>
        /// <paramref name="body"/>(first, end) over [0, <paramref name="count"/>) in spans of <paramref name="span"/>, on up to
        /// <paramref name="threads"/> workers; in one call on the calling thread when there is one worker or one span.
        /// Pointers the body captures stay valid: this returns once every span is done.
        /// </summary>
        internal static void Spans(long count, long span, int threads, Action<long, long> body)
        {
            long spans = (count + span - 1) / span;
            if (threads <= 1 || spans <= 1)
            {
                if (count > 0) body(0, count);
                return;
            }
            Parallel.For(0L, spans, new ParallelOptions { MaxDegreeOfParallelism = threads },
                i => body(i * span, Math.Min(count, (i + 1) * span)));
        }
    }
}

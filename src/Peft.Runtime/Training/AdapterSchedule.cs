using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Training
{
    /// <summary>
    /// An adapter layer whose training follows a schedule of optimizer steps (LaMDA freezes B's columns one by one):
    /// told after each optimizer step how many steps have completed.
    /// </summary>
    public interface IStepScheduledAdapter
    {
        /// <summary>
        /// Called after optimizer step <paramref name="completedSteps"/> (1 after the first); the layer applies whatever its
        /// schedule says is due by then. Calling it again with the same or a smaller number changes nothing further.
        /// </summary>
        void AfterOptimizerStep(int completedSteps);
    }

    /// <summary>
    /// The one per-step hook of the runtime: <see cref="AdapterTrainer"/> calls <see cref="AfterOptimizerStep"/> after
    /// every optimizer step, and a hand-written training loop calls it itself right after <c>optimizer.step()</c>.
    /// </summary>
    public static class AdapterSchedule
    {
        /// <summary>
        /// Tells every <see cref="IStepScheduledAdapter"/> in <paramref name="model"/>'s module tree that
        /// <paramref name="completedSteps"/> optimizer steps have completed.
        /// </summary>
        public static void AfterOptimizerStep(nn.Module model, int completedSteps)
        {
            ArgumentNullException.ThrowIfNull(model);
            if (completedSteps < 0) throw new ArgumentOutOfRangeException(nameof(completedSteps), completedSteps, "the number of completed steps is at least 0");
            foreach (var layer in ScheduledLayers(model)) layer.AfterOptimizerStep(completedSteps);
        }

        internal static IEnumerable<IStepScheduledAdapter> ScheduledLayers(nn.Module model)
        {
            if (model is IStepScheduledAdapter self) yield return self;
            foreach (var (_, module) in model.named_modules())
                if (module is IStepScheduledAdapter layer) yield return layer;
        }
    }
}

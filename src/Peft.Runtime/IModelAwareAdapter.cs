using System.Collections.Generic;

namespace Peft.Runtime
{
    /// <summary>
    /// An adapter layer whose state depends on the other adapter layers of the model, such as VeRA's projections,
    /// which every VeRA layer of an adapter shares at the largest size among them. The model core calls it each
    /// time it walks the module tree (when the model is attached and on every refresh), once per such layer, with
    /// all adapter layers; the call must be idempotent.
    /// </summary>
    public interface IModelAwareAdapter
    {
        /// <summary>Called with every adapter layer of the model and its module path, once the whole model is known.</summary>
        void OnModelAttached(IReadOnlyList<(string Path, IAdapterLayer Layer)> layers);
    }
}

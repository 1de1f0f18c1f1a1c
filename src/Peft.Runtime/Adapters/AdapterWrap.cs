using System;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Adapters
{
    /// <summary>What every method's <c>Wrap</c> does with the member it is given.</summary>
    internal static class AdapterWrap
    {
        /// <summary>
        /// Adds the adapter to <paramref name="layer"/> if it already is a <typeparamref name="TLayer"/> (several named
        /// adapters on one member), wraps it if it is a <c>Linear</c>, and otherwise says what the member holds.
        /// </summary>
        public static nn.Module<Tensor, Tensor> Linear<TLayer>(
            nn.Module<Tensor, Tensor>? layer, string site, string method, Action<TLayer> addAdapter, Func<Linear, TLayer> create)
            where TLayer : AdapterLayerBase
        {
            switch (layer)
            {
                case TLayer existing:
                    addAdapter(existing);
                    return existing;
                case Linear linear:
                    return create(linear);
                case null:
                    throw new InvalidOperationException($"{site}: the member is null when RegisterComponents() runs; assign the layer first (a field initializer or the constructor)");
                default:
                    throw new InvalidOperationException(PeftMessages.Format(PeftMessages.UnsupportedLayer, site, method, layer.GetType().Name));
            }
        }
    }
}

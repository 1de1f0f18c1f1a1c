using System;
using System.Collections.Generic;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Adapters
{
    /// <summary>
    /// One of a layer's containers of adapter parameters, keyed by adapter name (PEFT's
    /// <c>BaseTunerLayer.adapter_layer_names</c> lists these). A layer registers each once with
    /// <see cref="AdapterLayerBase.RegisterAdapterDict"/>, and the base class enumerates and removes an adapter's
    /// parameters through them.
    /// </summary>
    public interface IAdapterDict
    {
        /// <summary>Whether the adapter has an entry here.</summary>
        bool Contains(string adapter);

        /// <summary>Unregisters and disposes the adapter's entry, if any.</summary>
        void Remove(string adapter);

        /// <summary>
        /// The adapter's parameters, named relative to the container: <c>&lt;adapter&gt;.weight</c> for a module entry,
        /// <c>&lt;adapter&gt;</c> for a parameter entry.
        /// </summary>
        IEnumerable<(string Name, Parameter Parameter)> Parameters(string adapter);
    }

    /// <summary>
    /// Sub-modules keyed by adapter name (PEFT's <c>nn.ModuleDict</c>, e.g. <c>lora_A</c>), registered as they are
    /// added so parameter names read <c>lora_A.&lt;adapter&gt;.weight</c>. TorchSharp's own ModuleDict registers
    /// only once, which does not fit adapters that come and go.
    /// </summary>
    public sealed class AdapterModuleDict<T> : nn.Module, IAdapterDict where T : nn.Module
    {
        private readonly Dictionary<string, T> _byAdapter = new(StringComparer.Ordinal);

        /// <summary>Creates an empty dictionary.</summary>
        public AdapterModuleDict() : base("AdapterModuleDict") { }

        /// <summary>The module of adapter <paramref name="adapter"/>.</summary>
        public T this[string adapter] => _byAdapter[adapter];

        /// <summary>Whether the adapter has a module here.</summary>
        public bool Contains(string adapter) => _byAdapter.ContainsKey(adapter);

        /// <summary>Adds and registers the adapter's module.</summary>
        public void Add(string adapter, T module)
        {
            _byAdapter.Add(adapter, module);
            register_module(adapter, module);
        }

        /// <summary>Unregisters and disposes the adapter's module, if any.</summary>
        public void Remove(string adapter)
        {
            if (!_byAdapter.Remove(adapter, out var module)) return;
            register_module(adapter, null!); // TorchSharp's way to unregister
            module.Dispose();
        }

        /// <inheritdoc />
        public IEnumerable<(string Name, Parameter Parameter)> Parameters(string adapter)
        {
            foreach (var (name, parameter) in _byAdapter[adapter].named_parameters())
                yield return ($"{adapter}.{name}", parameter);
        }

        /// <inheritdoc />
        protected override void RegisterComponents() { } // registered one by one in Add
    }

    /// <summary>
    /// Parameters keyed by adapter name (PEFT's <c>nn.ParameterDict</c>, e.g. <c>lora_magnitude_vector</c>,
    /// <c>hada_w1_a</c>), so parameter names read <c>&lt;container&gt;.&lt;adapter&gt;</c>.
    /// </summary>
    public sealed class AdapterParameterDict : nn.Module, IAdapterDict
    {
        // Looked up in the module's own registry, not a copy: Module.to(dtype / device) replaces registered parameters.

        private readonly System.Action<string>? _beforeRead;

        /// <summary>Creates an empty dictionary.</summary>
        public AdapterParameterDict() : base("AdapterParameterDict") { }

        /// <summary>
        /// Creates an empty dictionary whose owner brings an adapter's parameter up to date (<paramref name="beforeRead"/>)
        /// each time <see cref="Parameters"/> lists it for a save, a load or the optimizer (SaRA restores its frozen entries).
        /// </summary>
        public AdapterParameterDict(System.Action<string> beforeRead) : this() => _beforeRead = beforeRead;

        /// <summary>The parameter of adapter <paramref name="adapter"/>.</summary>
        public Parameter this[string adapter] => _internal_params[adapter];

        /// <summary>Whether the adapter has a parameter here.</summary>
        public bool Contains(string adapter) => _internal_params.ContainsKey(adapter);

        /// <summary>Adds and registers the adapter's parameter.</summary>
        public void Add(string adapter, Parameter parameter) => register_parameter(adapter, parameter);

        /// <summary>Unregisters and disposes the adapter's parameter, if any.</summary>
        public void Remove(string adapter)
        {
            if (!_internal_params.TryGetValue(adapter, out var parameter)) return;
            _internal_params.Remove(adapter);
            parameter.Dispose();
        }

        /// <inheritdoc />
        public IEnumerable<(string Name, Parameter Parameter)> Parameters(string adapter)
        {
            _beforeRead?.Invoke(adapter);
            yield return (adapter, _internal_params[adapter]);
        }

        /// <inheritdoc />
        protected override void RegisterComponents() { }
    }
}

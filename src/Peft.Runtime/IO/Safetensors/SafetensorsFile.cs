using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using static TorchSharp.torch;

namespace Peft.Runtime.IO
{
    /// <summary>
    /// A safetensors file read into memory: its tensors (CPU, in header order) and metadata.
    /// Disposing it disposes every tensor; keep one beyond it with <c>tensor.alias()</c> or by copying it into a parameter.
    /// </summary>
    public sealed class SafetensorsFile : IDisposable
    {
        private readonly OrderedDictionary<string, Tensor> _tensors;
        private bool _disposed;

        internal SafetensorsFile(string path, SafetensorsHeader header, OrderedDictionary<string, Tensor> tensors)
        {
            Path = path;
            Header = header;
            _tensors = tensors;
            Tensors = new ReadOnlyDictionary<string, Tensor>(tensors);
        }

        /// <summary>The file the tensors were read from.</summary>
        public string Path { get; }

        /// <summary>The validated header.</summary>
        public SafetensorsHeader Header { get; }

        /// <summary>The tensors by key, in the order the header lists them. They belong to this object and to no dispose scope.</summary>
        public IReadOnlyDictionary<string, Tensor> Tensors { get; }

        /// <summary>The <c>__metadata__</c> map; empty when the file has none.</summary>
        public IReadOnlyDictionary<string, string> Metadata => Header.Metadata;

        /// <summary>Disposes every tensor.</summary>
        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            foreach (Tensor t in _tensors.Values) t.Dispose();
        }
    }
}

using Microsoft.CodeAnalysis;

namespace Peft.Generators.Parse
{
    /// <summary>Recognises TorchSharp's types by name (the generator references no TorchSharp assembly).</summary>
    internal static class TorchSymbols
    {
        /// <summary><c>TorchSharp.torch</c>.</summary>
        public static bool IsTorch(INamedTypeSymbol? type) =>
            type is { Name: "torch", Arity: 0, ContainingType: null, ContainingNamespace: { Name: "TorchSharp" } ns }
            && ns.ContainingNamespace is { IsGlobalNamespace: true };

        /// <summary><c>TorchSharp.torch.nn</c>.</summary>
        public static bool IsNn(INamedTypeSymbol? type) => type is { Name: "nn", Arity: 0 } && IsTorch(type.ContainingType);

        /// <summary><c>TorchSharp.torch.nn.Module</c>, the non-generic root of every module.</summary>
        public static bool IsModule(INamedTypeSymbol? type) => type is { Name: "Module", Arity: 0 } && IsNn(type.ContainingType);

        /// <summary><c>TorchSharp.torch.Tensor</c>.</summary>
        public static bool IsTensor(ITypeSymbol? type) =>
            type is INamedTypeSymbol { Name: "Tensor", Arity: 0 } named && IsTorch(named.ContainingType);

        /// <summary>Exactly <c>TorchSharp.torch.nn.Module&lt;Tensor, Tensor&gt;</c>: the type an adapter layer is assigned to.</summary>
        public static bool IsModuleOfTensorToTensor(ITypeSymbol? type) =>
            type is INamedTypeSymbol { Name: "Module", Arity: 2 } named
            && IsNn(named.ContainingType)
            && IsTensor(named.TypeArguments[0])
            && IsTensor(named.TypeArguments[1]);

        /// <summary>Whether <paramref name="type"/> is a TorchSharp module (derives from <c>torch.nn.Module</c>).</summary>
        public static bool IsModuleType(ITypeSymbol? type)
        {
            if (type is ITypeParameterSymbol parameter)
            {
                foreach (ITypeSymbol constraint in parameter.ConstraintTypes)
                {
                    if (IsModuleType(constraint)) return true;
                }

                return false;
            }

            for (INamedTypeSymbol? current = type as INamedTypeSymbol; current is not null; current = current.BaseType)
            {
                if (IsModule(current)) return true;
            }

            return false;
        }

        /// <summary>Whether a class derives from <c>torch.nn.Module</c>.</summary>
        public static bool DerivesFromModule(INamedTypeSymbol type) => IsModuleType(type.BaseType);

        /// <summary>TorchSharp's <c>[ComponentName(Name = ...)]</c> (namespace <c>TorchSharp.Utils</c>, or <c>TorchSharp</c>).</summary>
        public static bool IsComponentNameAttribute(INamedTypeSymbol? type)
        {
            if (type is not { Name: "ComponentNameAttribute", ContainingType: null }) return false;
            INamespaceSymbol ns = type.ContainingNamespace;
            if (ns is { Name: "Utils" }) ns = ns.ContainingNamespace;
            return ns is { Name: "TorchSharp" } && ns.ContainingNamespace is { IsGlobalNamespace: true };
        }
    }
}

using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;

namespace Peft.Generators.Parse
{
    /// <summary>What an attribute of the DSL does.</summary>
    internal enum AttributeKind
    {
        /// <summary>An adapter method: <c>Peft.XAttribute</c> wires <c>Peft.Runtime.Adapters.X.Wrap</c>.</summary>
        Adapter,

        /// <summary><c>[PeftModel]</c> on a root class.</summary>
        PeftModel,

        /// <summary><c>[Trainable]</c> on a member trained in full.</summary>
        Trainable,

        /// <summary><c>[MergeWith]</c> on a class or member: a generated <c>Merge{Name}()</c> (read while parsing the class; no pipeline of its own).</summary>
        Merge,
    }

    /// <summary>One attribute the generator reacts to.</summary>
    /// <param name="MetadataName">The attribute's full metadata name, e.g. <c>Peft.LoRAAttribute</c>.</param>
    /// <param name="Kind">What it does.</param>
    /// <param name="Method">For adapters, the method name (<c>LoRA</c>): the runtime's <c>Adapters.LoRA</c> and <c>Adapters.LoRAOptions</c>.</param>
    internal sealed record KnownAttribute(string MetadataName, AttributeKind Kind, string Method)
    {
        /// <summary><c>global::Peft.Runtime.Adapters.X</c>, whose static <c>Wrap</c> makes the adapter layer.</summary>
        public string FactoryType => "global::Peft.Runtime.Adapters." + Method;

        /// <summary><c>global::Peft.Runtime.Adapters.XOptions</c>, whose properties mirror the attribute's.</summary>
        public string OptionsType => "global::Peft.Runtime.Adapters." + Method + "Options";
    }

    /// <summary>The one table of attributes the generator matches (by metadata name: it references no PeftDsl assembly).</summary>
    internal static class KnownAttributes
    {
        /// <summary>The named argument holding the adapter's name.</summary>
        public const string NameArgument = "Name";

        /// <summary>The named argument holding class-level targets.</summary>
        public const string TargetsArgument = "Targets";

        /// <summary>The adapter name used when <c>Name</c> is not given.</summary>
        public const string DefaultAdapterName = "default";

        /// <summary>Every adapter method, in the order of the rule table (src/Shared/AdapterConfigFields.cs), whose one entry per method is all the generator needs.</summary>
        public static readonly ImmutableArray<string> AdapterMethods =
            AdapterConfigFields.Methods.Select(static m => m.Name).ToImmutableArray();

        /// <summary>The full table: adapters, then <c>[PeftModel]</c>, <c>[Trainable]</c> and <c>[MergeWith]</c>.</summary>
        public static readonly ImmutableArray<KnownAttribute> All = Build();

        private static ImmutableArray<KnownAttribute> Build()
        {
            var builder = ImmutableArray.CreateBuilder<KnownAttribute>();
            foreach (string method in AdapterMethods)
            {
                builder.Add(new KnownAttribute("Peft." + method + "Attribute", AttributeKind.Adapter, method));
            }

            builder.Add(new KnownAttribute("Peft.PeftModelAttribute", AttributeKind.PeftModel, "PeftModel"));
            builder.Add(new KnownAttribute("Peft.TrainableAttribute", AttributeKind.Trainable, "Trainable"));
            builder.Add(new KnownAttribute("Peft.MergeWithAttribute", AttributeKind.Merge, "MergeWith"));
            return builder.ToImmutable();
        }

        /// <summary>The table entry for an attribute application, or null when it is none of ours.</summary>
        public static KnownAttribute? Find(AttributeData attribute)
        {
            INamedTypeSymbol? type = attribute.AttributeClass;
            if (type is null || type.TypeKind == TypeKind.Error || type.ContainingType is not null) return null;
            if (type.ContainingNamespace is not { Name: "Peft" } ns || ns.ContainingNamespace is not { IsGlobalNamespace: true })
                return null;

            string metadataName = "Peft." + type.MetadataName;
            foreach (KnownAttribute known in All)
            {
                if (known.MetadataName == metadataName) return known;
            }

            return null;
        }
    }
}

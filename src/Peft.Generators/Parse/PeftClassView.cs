using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Globalization;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace Peft.Generators.Parse
{
    /// <summary>One adapter attribute as it applies to one member (directly, or through class-level Targets).</summary>
    internal sealed class AdapterUse
    {
        public AdapterUse(AttributeData attribute, KnownAttribute known, bool fromClass)
        {
            Attribute = attribute;
            Known = known;
            FromClass = fromClass;
            Name = KnownAttributes.DefaultAdapterName;
            foreach (KeyValuePair<string, TypedConstant> argument in attribute.NamedArguments)
            {
                if (argument.Key != KnownAttributes.NameArgument) continue;
                if (argument.Value.Kind == TypedConstantKind.Primitive && argument.Value.Value is string name) Name = name.Length > 0 ? name : null;
                else if (argument.Value.IsNull) Name = null;
            }
        }

        public AttributeData Attribute { get; }

        public KnownAttribute Known { get; }

        /// <summary>The method, e.g. <c>LoRA</c>.</summary>
        public string Method => Known.Method;

        /// <summary>Whether the attribute sits on the class and reaches the member through Targets.</summary>
        public bool FromClass { get; }

        /// <summary>The adapter's name; null where <c>Name</c> is empty or null.</summary>
        public string? Name { get; }

        /// <summary>The runtime layer the method's adapters live in (DoRA shares LoRA's), from the rule table: one layer holds one family.</summary>
        public string Family => AdapterConfigFields.Find(Method)?.LayerFamily ?? Method;
    }

    /// <summary>
    /// The one reading of a class's PeftDsl attributes, which the parser and the analyzers both use: its adapter sites
    /// (class-level adapters first, through Targets, then the member's own, in declaration order), its [Trainable]
    /// members and its [MergeWith] applications. Symbols only: the parser turns what it needs into equatable models.
    /// </summary>
    internal sealed class PeftClassView
    {
        private PeftClassView(INamedTypeSymbol type)
        {
            Type = type;
            FullName = type.ToDisplayString(ClassParser.UserFormat);
        }

        public INamedTypeSymbol Type { get; }

        /// <summary>The class's name as the runtime's messages show it, e.g. <c>Demo.Block</c>.</summary>
        public string FullName { get; }

        /// <summary>Adapter attributes on the class itself.</summary>
        public List<(AttributeData Attribute, KnownAttribute Known)> ClassAdapters { get; } = new List<(AttributeData, KnownAttribute)>();

        /// <summary>[MergeWith] on the class itself.</summary>
        public List<AttributeData> ClassMerges { get; } = new List<AttributeData>();

        /// <summary>Members with at least one adapter, in declaration order.</summary>
        public List<(ISymbol Member, List<AdapterUse> Uses)> Sites { get; } = new List<(ISymbol, List<AdapterUse>)>();

        /// <summary>Fields and properties with [Trainable], in declaration order.</summary>
        public List<ISymbol> TrainableMembers { get; } = new List<ISymbol>();

        /// <summary>Fields and properties with [MergeWith].</summary>
        public List<(ISymbol Member, AttributeData Attribute)> MemberMerges { get; } = new List<(ISymbol, AttributeData)>();

        public bool HasPeftModel { get; private set; }

        public bool HasTrainable { get; private set; }

        /// <summary>Whether any adapter attribute is on the class or its members.</summary>
        public bool HasAdapterAttribute { get; private set; }

        /// <summary>Whether the generator would react to this class at all (adapters, [Trainable] or [PeftModel]).</summary>
        public bool HasGeneratorAttribute => HasAdapterAttribute || HasTrainable || HasPeftModel;

        /// <summary>Class, then member: <c>Demo.Block.q</c>, the runtime's site name.</summary>
        public string SiteOf(ISymbol member) => FullName + "." + member.Name;

        /// <summary>The fields and properties the generator considers (declared, not implicit).</summary>
        public static IEnumerable<ISymbol> DeclaredMembers(INamedTypeSymbol type)
        {
            foreach (ISymbol member in type.GetMembers())
            {
                if (member is (IFieldSymbol or IPropertySymbol) && !member.IsImplicitlyDeclared) yield return member;
            }
        }

        /// <summary>The view of <paramref name="type"/>, or null when it carries no PeftDsl attribute at all.</summary>
        public static PeftClassView? Create(INamedTypeSymbol type)
        {
            if (type.TypeKind != TypeKind.Class) return null;
            var view = new PeftClassView(type);
            bool any = false;
            foreach (AttributeData attribute in type.GetAttributes())
            {
                switch (KnownAttributes.Find(attribute))
                {
                    case { Kind: AttributeKind.Adapter } known:
                        view.ClassAdapters.Add((attribute, known));
                        view.HasAdapterAttribute = any = true;
                        break;
                    case { Kind: AttributeKind.PeftModel }:
                        view.HasPeftModel = any = true;
                        break;
                    case { Kind: AttributeKind.Merge }:
                        view.ClassMerges.Add(attribute);
                        any = true;
                        break;
                }
            }

            var targets = new List<ImmutableHashSet<string>>();
            foreach (var (attribute, _) in view.ClassAdapters) targets.Add(TargetsOf(attribute));

            foreach (ISymbol member in DeclaredMembers(type))
            {
                var uses = new List<AdapterUse>();
                for (int i = 0; i < view.ClassAdapters.Count; i++)
                {
                    if (targets[i].Contains(member.Name)) uses.Add(new AdapterUse(view.ClassAdapters[i].Attribute, view.ClassAdapters[i].Known, fromClass: true));
                }

                foreach (AttributeData attribute in member.GetAttributes())
                {
                    switch (KnownAttributes.Find(attribute))
                    {
                        case { Kind: AttributeKind.Adapter } known:
                            uses.Add(new AdapterUse(attribute, known, fromClass: false));
                            view.HasAdapterAttribute = any = true;
                            break;
                        case { Kind: AttributeKind.Trainable }:
                            if (!view.TrainableMembers.Contains(member, SymbolEqualityComparer.Default)) view.TrainableMembers.Add(member);
                            view.HasTrainable = any = true;
                            break;
                        case { Kind: AttributeKind.Merge }:
                            view.MemberMerges.Add((member, attribute));
                            any = true;
                            break;
                    }
                }

                if (uses.Count > 0) view.Sites.Add((member, uses));
            }

            return any ? view : null;
        }

        /// <summary>The class-level Targets, as the generator reads them.</summary>
        public static ImmutableHashSet<string> TargetsOf(AttributeData attribute)
        {
            var names = ImmutableHashSet.CreateBuilder<string>(StringComparer.Ordinal);
            foreach (string name in TargetList(attribute) ?? new List<string>()) names.Add(name);
            return names.ToImmutable();
        }

        /// <summary>The Targets strings in order; null when the attribute has no (non-null) Targets.</summary>
        public static List<string>? TargetList(AttributeData attribute)
        {
            foreach (KeyValuePair<string, TypedConstant> argument in attribute.NamedArguments)
            {
                if (argument.Key != KnownAttributes.TargetsArgument || argument.Value.Kind != TypedConstantKind.Array || argument.Value.IsNull) continue;
                var names = new List<string>();
                foreach (TypedConstant value in argument.Value.Values)
                {
                    if (value.Kind == TypedConstantKind.Primitive && value.Value is string name) names.Add(name);
                }

                return names;
            }

            return null;
        }

        /// <summary>How deep <see cref="ClassTypesIn"/> looks into arrays and type arguments.</summary>
        public const int MaxTypeDepth = 8;

        /// <summary>The class types a member type mentions: itself, array elements and type arguments, recursively (erroneous types left out, not their arguments).</summary>
        public static IEnumerable<INamedTypeSymbol> ClassTypesIn(ITypeSymbol type, int depth = 0)
        {
            if (depth > MaxTypeDepth) yield break;
            switch (type)
            {
                case IArrayTypeSymbol array:
                    foreach (INamedTypeSymbol inner in ClassTypesIn(array.ElementType, depth + 1)) yield return inner;
                    break;
                case INamedTypeSymbol { TypeKind: not TypeKind.Error } named:
                    if (named.TypeKind == TypeKind.Class) yield return named;
                    foreach (ITypeSymbol argument in named.TypeArguments)
                    {
                        foreach (INamedTypeSymbol inner in ClassTypesIn(argument, depth + 1)) yield return inner;
                    }

                    break;
            }
        }

        /// <summary>Numbers as the runtime formats them (invariant culture).</summary>
        public static string Invariant(object value) => value switch
        {
            double d => d.ToString(CultureInfo.InvariantCulture),
            IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
            _ => value.ToString() ?? string.Empty,
        };
    }

    /// <summary>Reads attribute arguments and finds where they are written.</summary>
    internal static class AttributeArguments
    {
        /// <summary>
        /// The value given for a constructor parameter (by its PascalCase name: <c>rank</c> is <c>Rank</c>) or a named
        /// argument. Missing or erroneous arguments give false.
        /// </summary>
        public static bool TryGet(AttributeData attribute, string property, out TypedConstant value)
        {
            IMethodSymbol? constructor = attribute.AttributeConstructor;
            if (constructor is not null && constructor.Parameters.Length == attribute.ConstructorArguments.Length)
            {
                for (int i = 0; i < constructor.Parameters.Length; i++)
                {
                    if (PascalCase(constructor.Parameters[i].Name) != property) continue;
                    value = attribute.ConstructorArguments[i];
                    return value.Kind != TypedConstantKind.Error;
                }
            }

            foreach (KeyValuePair<string, TypedConstant> argument in attribute.NamedArguments)
            {
                if (argument.Key != property) continue;
                value = argument.Value;
                return value.Kind != TypedConstantKind.Error;
            }

            value = default;
            return false;
        }

        /// <summary>An int argument.</summary>
        public static int? Int(AttributeData attribute, string property) =>
            TryGet(attribute, property, out TypedConstant value) && value.Kind is TypedConstantKind.Primitive or TypedConstantKind.Enum && value.Value is int i ? i : null;

        /// <summary>A double argument.</summary>
        public static double? Double(AttributeData attribute, string property) =>
            TryGet(attribute, property, out TypedConstant value) && value.Kind == TypedConstantKind.Primitive && value.Value is double d ? d : null;

        /// <summary>A constructor parameter's property: <c>rank</c> → <c>Rank</c>.</summary>
        public static string PascalCase(string name) =>
            name.Length == 0 ? name : char.ToUpperInvariant(name[0]) + name.Substring(1);

        public static AttributeSyntax? Syntax(AttributeData attribute, CancellationToken cancellationToken) =>
            attribute.ApplicationSyntaxReference?.GetSyntax(cancellationToken) as AttributeSyntax;

        /// <summary>Where the attribute is written, or <see cref="Location.None"/>.</summary>
        public static Location AttributeLocation(AttributeData attribute, CancellationToken cancellationToken) =>
            Syntax(attribute, cancellationToken)?.GetLocation() ?? Location.None;

        /// <summary>The expression written for a constructor parameter or named argument; null when not written.</summary>
        public static ExpressionSyntax? ArgumentExpression(AttributeData attribute, string property, CancellationToken cancellationToken)
        {
            if (Syntax(attribute, cancellationToken) is not { ArgumentList: { } list }) return null;
            IMethodSymbol? constructor = attribute.AttributeConstructor;
            int position = 0;
            foreach (AttributeArgumentSyntax argument in list.Arguments)
            {
                if (argument.NameEquals is { } nameEquals)
                {
                    if (nameEquals.Name.Identifier.ValueText == property) return argument.Expression;
                    continue;
                }

                string? parameter = argument.NameColon?.Name.Identifier.ValueText;
                if (parameter is null && constructor is not null && position < constructor.Parameters.Length)
                    parameter = constructor.Parameters[position].Name;
                position++;
                if (parameter is not null && PascalCase(parameter) == property) return argument.Expression;
            }

            return null;
        }

        /// <summary>Where an argument is written, else the attribute.</summary>
        public static Location ArgumentLocation(AttributeData attribute, string property, CancellationToken cancellationToken) =>
            ArgumentExpression(attribute, property, cancellationToken)?.GetLocation() ?? AttributeLocation(attribute, cancellationToken);

        /// <summary>The elements written for an array argument (an array creation or collection expression), or null.</summary>
        public static IReadOnlyList<ExpressionSyntax>? ArrayElements(ExpressionSyntax? expression) => expression switch
        {
            ArrayCreationExpressionSyntax { Initializer: { } initializer } => initializer.Expressions,
            ImplicitArrayCreationExpressionSyntax creation => creation.Initializer.Expressions,
            CollectionExpressionSyntax collection => Elements(collection),
            _ => null,
        };

        private static List<ExpressionSyntax> Elements(CollectionExpressionSyntax collection)
        {
            var elements = new List<ExpressionSyntax>();
            foreach (CollectionElementSyntax element in collection.Elements)
            {
                if (element is ExpressionElementSyntax expression) elements.Add(expression.Expression);
            }

            return elements;
        }

        /// <summary>
        /// The <paramref name="index"/>-th positional value of a <c>params</c> constructor (<c>[MergeWith("a", "b")]</c>,
        /// or one array argument), else the attribute.
        /// </summary>
        public static Location ParamsElementLocation(AttributeData attribute, int index, CancellationToken cancellationToken)
        {
            if (Syntax(attribute, cancellationToken) is { ArgumentList: { } list })
            {
                var positional = new List<ExpressionSyntax>();
                foreach (AttributeArgumentSyntax argument in list.Arguments)
                {
                    if (argument.NameEquals is null) positional.Add(argument.Expression);
                }

                if (positional.Count == 1 && ArrayElements(positional[0]) is { } elements)
                    return index < elements.Count ? elements[index].GetLocation() : positional[0].GetLocation();
                if (index < positional.Count) return positional[index].GetLocation();
            }

            return AttributeLocation(attribute, cancellationToken);
        }

        /// <summary>The <paramref name="index"/>-th element of an array named argument, else the argument, else the attribute.</summary>
        public static Location NamedElementLocation(AttributeData attribute, string property, int index, CancellationToken cancellationToken)
        {
            ExpressionSyntax? expression = ArgumentExpression(attribute, property, cancellationToken);
            if (ArrayElements(expression) is { } elements && index < elements.Count) return elements[index].GetLocation();
            return expression?.GetLocation() ?? AttributeLocation(attribute, cancellationToken);
        }

        /// <summary>Where Targets names <paramref name="target"/> (<c>nameof(q)</c> or <c>"q"</c>), else the attribute.</summary>
        public static Location TargetLocation(AttributeData attribute, string target, CancellationToken cancellationToken)
        {
            ExpressionSyntax? targets = ArgumentExpression(attribute, KnownAttributes.TargetsArgument, cancellationToken);
            if (ArrayElements(targets) is { } elements)
            {
                foreach (ExpressionSyntax element in elements)
                {
                    if (WrittenName(element) == target) return element.GetLocation();
                }
            }

            return targets?.GetLocation() ?? AttributeLocation(attribute, cancellationToken);
        }

        /// <summary>The name a Targets element spells: <c>nameof(x)</c>, <c>nameof(A.x)</c> or a string literal.</summary>
        private static string? WrittenName(ExpressionSyntax element) => element switch
        {
            LiteralExpressionSyntax literal when literal.Token.Value is string text => text,
            InvocationExpressionSyntax { Expression: IdentifierNameSyntax { Identifier.ValueText: "nameof" }, ArgumentList.Arguments: { Count: 1 } arguments } =>
                arguments[0].Expression switch
                {
                    IdentifierNameSyntax identifier => identifier.Identifier.ValueText,
                    MemberAccessExpressionSyntax access => access.Name.Identifier.ValueText,
                    _ => null,
                },
            _ => null,
        };
    }
}

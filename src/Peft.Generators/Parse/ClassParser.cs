using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Text;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Peft.Generators.Model;

namespace Peft.Generators.Parse
{
    /// <summary>
    /// Turns the class around an attribute application into a <see cref="ClassModel"/>. Never throws: whatever it
    /// cannot wire it leaves out, it returns null where the class gets no file, and a bug of its own is an internal
    /// error (PEFT999), not a missing file.
    /// </summary>
    internal static class ClassParser
    {
        /// <summary>Users see this form of a type's name (messages, <c>PeftInfo.TypeName</c>).</summary>
        internal static readonly SymbolDisplayFormat UserFormat = SymbolDisplayFormat.FullyQualifiedFormat
            .WithGlobalNamespaceStyle(SymbolDisplayGlobalNamespaceStyle.Omitted)
            .WithMiscellaneousOptions(SymbolDisplayMiscellaneousOptions.UseSpecialTypes);

        private static readonly SymbolDisplayFormat NamespaceFormat = SymbolDisplayFormat.FullyQualifiedFormat
            .WithGlobalNamespaceStyle(SymbolDisplayGlobalNamespaceStyle.Omitted);

        /// <summary>
        /// Tests only (through InternalsVisibleTo): called with the class's name just before its model is built, so a
        /// test can make the parser throw. Async-local, so that tests running side by side do not see each other's.
        /// </summary>
        internal static readonly AsyncLocal<Action<string>?> TestHook = new AsyncLocal<Action<string>?>();

        /// <summary>The parse step of the attribute <paramref name="pipeline"/>'s pipeline.</summary>
        /// <remarks>
        /// Every annotated member of a class reaches this step, through each of its attributes; only the class's
        /// first application of a known attribute (class first, then fields and properties in declaration order)
        /// produces the model, so each class is parsed once and gets exactly one file. Never throws except on
        /// cancellation: an exception is a bug in the generator, returned as an internal error (PEFT999) so that it
        /// fails the build instead of passing for a class with nothing to generate.
        /// </remarks>
        public static ParseResult? Parse(GeneratorAttributeSyntaxContext context, KnownAttribute pipeline, CancellationToken cancellationToken)
        {
            try
            {
                INamedTypeSymbol? type = context.TargetSymbol switch
                {
                    INamedTypeSymbol named => named,
                    IFieldSymbol field => field.ContainingType,
                    IPropertySymbol property => property.ContainingType,
                    _ => null,
                };
                if (type is null || !IsCanonicalTarget(context, type, pipeline)) return null;

                Compilation compilation = context.SemanticModel.Compilation;
                if (!IsEligible(type, compilation, cancellationToken)) return null;
                TestHook.Value?.Invoke(type.Name);
                return ParseResult.Of(Build(type, compilation, cancellationToken));
            }
            catch (OperationCanceledException)
            {
                throw;
            }
            catch (Exception ex)
            {
                return new ParseResult(null, InternalError(context, ex));
            }
        }

        /// <summary>What PEFT999 says about <paramref name="exception"/>; built so that it cannot throw itself.</summary>
        private static InternalErrorModel InternalError(GeneratorAttributeSyntaxContext context, Exception exception)
        {
            string what = exception.GetType().FullName;
            try
            {
                what += ": " + OneLine(exception.Message);
                string? frame = exception.StackTrace?.Split('\n').Select(line => line.Trim()).FirstOrDefault(line => line.Length > 0);
                if (frame is not null) what += " (" + frame + ")";

                ISymbol target = context.TargetSymbol;
                INamedTypeSymbol? type = target as INamedTypeSymbol ?? target.ContainingType;
                string name = type?.ToDisplayString(UserFormat) ?? target.Name;
                SyntaxToken identifier = context.TargetNode switch
                {
                    BaseTypeDeclarationSyntax declaration => declaration.Identifier,
                    VariableDeclaratorSyntax variable => variable.Identifier,
                    PropertyDeclarationSyntax property => property.Identifier,
                    _ => default,
                };
                Location location = identifier.RawKind != 0 ? identifier.GetLocation() : context.TargetNode.GetLocation();
                return new InternalErrorModel(name, what, LocationModel.From(location));
            }
            catch (Exception)
            {
                return new InternalErrorModel("a class with PeftDsl attributes", what, null);
            }
        }

        private static string OneLine(string text) =>
            string.Join(" ", text.Split(new[] { '\r', '\n' }, StringSplitOptions.RemoveEmptyEntries).Select(line => line.Trim()));

        // ---- which application produces the model ----------------------------------------------------------

        private static bool IsCanonicalTarget(GeneratorAttributeSyntaxContext context, INamedTypeSymbol type, KnownAttribute pipeline)
        {
            if (FindCanonical(type) is not { } canonical) return false;
            var (symbol, attribute, known) = canonical;
            if (!ReferenceEquals(known, pipeline) || !SymbolEqualityComparer.Default.Equals(symbol, context.TargetSymbol)) return false;

            // A class split in parts reaches this step once per part (and a field list once per variable):
            // only the declaration holding the attribute counts.
            SyntaxNode declaration = context.TargetNode is VariableDeclaratorSyntax { Parent.Parent: FieldDeclarationSyntax field } ? field : context.TargetNode;
            return attribute.ApplicationSyntaxReference is { } reference
                && reference.SyntaxTree == declaration.SyntaxTree
                && declaration.Span.Contains(reference.Span);
        }

        /// <summary>The first application of a known attribute on the class or one of its fields and properties.</summary>
        private static (ISymbol Symbol, AttributeData Attribute, KnownAttribute Known)? FindCanonical(INamedTypeSymbol type)
        {
            foreach (AttributeData attribute in type.GetAttributes())
            {
                if (KnownAttributes.Find(attribute) is { Kind: AttributeKind.Adapter or AttributeKind.PeftModel } known)
                    return (type, attribute, known);
            }

            foreach (ISymbol member in type.GetMembers())
            {
                if (member is not (IFieldSymbol or IPropertySymbol) || member.IsImplicitlyDeclared) continue;
                foreach (AttributeData attribute in member.GetAttributes())
                {
                    if (KnownAttributes.Find(attribute) is { Kind: AttributeKind.Adapter or AttributeKind.Trainable } known)
                        return (member, attribute, known);
                }
            }

            return null;
        }

        // ---- which classes get a file ----------------------------------------------------------------------

        /// <summary>Whether the generator emits a file for <paramref name="type"/> (also used for component types).</summary>
        private static bool IsEmitted(INamedTypeSymbol type, Compilation compilation, CancellationToken cancellationToken) =>
            type.TypeKind == TypeKind.Class
            && SymbolEqualityComparer.Default.Equals(type.ContainingAssembly, compilation.Assembly)
            && FindCanonical(type) is not null
            && IsEligible(type, compilation, cancellationToken);

        private static bool IsEligible(INamedTypeSymbol type, Compilation compilation, CancellationToken cancellationToken)
        {
            if (type.TypeKind != TypeKind.Class || type.IsRecord || type.IsStatic || type.IsImplicitlyDeclared) return false;
            if (!SymbolEqualityComparer.Default.Equals(type.ContainingAssembly, compilation.Assembly)) return false;
            if (!AllDeclarationsPartial(type, cancellationToken)) return false;
            for (INamedTypeSymbol? container = type.ContainingType; container is not null; container = container.ContainingType)
            {
                if (container.TypeKind is not (TypeKind.Class or TypeKind.Struct or TypeKind.Interface) || container.IsRefLikeType) return false;
                if (!AllDeclarationsPartial(container, cancellationToken)) return false;
            }

            if (!TorchSymbols.DerivesFromModule(type) || !HasOverridableRegisterComponents(type)) return false;

            bool isPeftModel = IsPeftModel(type);
            foreach (GeneratedMember generated in GeneratedMember.All)
            {
                if (generated.PeftModelOnly && !isPeftModel) continue;
                foreach (ISymbol declared in type.GetMembers(generated.Name))
                {
                    if (!declared.IsImplicitlyDeclared) return false; // the user wrote it: leave the class alone
                }
            }

            return true;
        }

        private static bool AllDeclarationsPartial(INamedTypeSymbol type, CancellationToken cancellationToken)
        {
            ImmutableArray<SyntaxReference> references = type.DeclaringSyntaxReferences;
            if (references.IsEmpty) return false;
            foreach (SyntaxReference reference in references)
            {
                if (reference.GetSyntax(cancellationToken) is not TypeDeclarationSyntax declaration) return false;
                if (!declaration.Modifiers.Any(SyntaxKind.PartialKeyword) || declaration.Modifiers.Any(SyntaxKind.FileKeyword)) return false;
            }

            return true;
        }

        private static bool HasOverridableRegisterComponents(INamedTypeSymbol type)
        {
            for (INamedTypeSymbol? current = type.BaseType; current is not null; current = current.BaseType)
            {
                foreach (ISymbol member in current.GetMembers("RegisterComponents"))
                {
                    if (member is IMethodSymbol { MethodKind: MethodKind.Ordinary, IsStatic: false, Parameters.IsEmpty: true, Arity: 0 } method)
                    {
                        return method.ReturnsVoid
                            && (method.IsVirtual || method.IsOverride || method.IsAbstract)
                            && !method.IsSealed
                            && method.DeclaredAccessibility == Accessibility.Protected;
                    }
                }
            }

            return false;
        }

        private static string? PeftModelString(INamedTypeSymbol type, string property)
        {
            foreach (AttributeData attribute in type.GetAttributes())
            {
                if (KnownAttributes.Find(attribute) is not { Kind: AttributeKind.PeftModel }) continue;
                foreach (var named in attribute.NamedArguments)
                    if (named.Key == property && named.Value.Value is string value) return value;
            }
            return null;
        }

        private static bool IsPeftModel(INamedTypeSymbol type) =>
            type.GetAttributes().Any(static a => KnownAttributes.Find(a) is { Kind: AttributeKind.PeftModel });

        // ---- the model -------------------------------------------------------------------------------------

        private static ClassModel Build(INamedTypeSymbol type, Compilation compilation, CancellationToken cancellationToken)
        {
            bool isPeftModel = IsPeftModel(type);
            string fullName = type.ToDisplayString(UserFormat);
            var shapes = new ShapeReader(type, compilation, cancellationToken);

            // The attributes are read once, by the view the analyzers read them through.
            PeftClassView view = PeftClassView.Create(type) ?? throw new InvalidOperationException("a class with a PeftDsl attribute has no view");
            var usesOf = new Dictionary<ISymbol, List<AdapterUse>>(SymbolEqualityComparer.Default);
            foreach (var (member, uses) in view.Sites) usesOf[member] = uses;

            var sites = new List<AdapterSiteModel>();
            var memberMerges = new List<(AttributeData Attribute, string ComponentName)>();
            var trainable = new List<string>();
            var components = new List<string>();
            foreach (ISymbol member in PeftClassView.DeclaredMembers(type))
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (!member.IsStatic && MemberType(member) is { } memberType)
                    CollectComponents(memberType, type, compilation, components, depth: 0, cancellationToken);

                string componentName = ComponentNameOf(member);
                foreach (var (merged, attribute) in view.MemberMerges)
                {
                    if (SymbolEqualityComparer.Default.Equals(merged, member)) memberMerges.Add((attribute, componentName));
                }

                if (usesOf.TryGetValue(member, out List<AdapterUse>? adapters) && CanWire(member))
                {
                    (long? inFeatures, long? outFeatures) = shapes.Read(member);
                    var adapterNames = new HashSet<string>(StringComparer.Ordinal);
                    foreach (AdapterUse use in adapters)
                    {
                        AdapterSiteModel? site = ParseSite(use.Attribute, use.Known, member, componentName, fullName, inFeatures, outFeatures, cancellationToken);
                        if (site is not null && adapterNames.Add(site.AdapterName)) sites.Add(site);
                    }
                }

                if (view.TrainableMembers.Contains(member, SymbolEqualityComparer.Default) && CanTrain(member) && !trainable.Contains(componentName))
                    trainable.Add(componentName);
            }

            var containingTypes = new List<TypeDeclarationModel>();
            for (INamedTypeSymbol? container = type.ContainingType; container is not null; container = container.ContainingType)
                containingTypes.Insert(0, Declaration(container));

            var reserved = new HashSet<string>(GeneratedMember.All.Select(static g => g.Name), StringComparer.Ordinal);
            foreach (ISymbol declared in type.GetMembers())
            {
                if (!declared.IsImplicitlyDeclared) reserved.Add(declared.Name);
            }

            List<MergeModel> merges = MergeParser.Parse(type, view.ClassMerges, isPeftModel, sites, memberMerges, reserved);
            List<string> hidden = HiddenNames(type, isPeftModel, compilation, cancellationToken);
            foreach (MergeModel merge in merges)
            {
                if (HidesMerge(type, merge.MethodName, compilation, cancellationToken)) hidden.Add(merge.MethodName);
            }

            return new ClassModel(
                HintName: HintName(type),
                Namespace: type.ContainingNamespace is { IsGlobalNamespace: false } ns ? ns.ToDisplayString(NamespaceFormat) : null,
                ContainingTypes: containingTypes.ToEquatableArray(),
                Type: Declaration(type),
                FullName: fullName,
                IsPeftModel: isPeftModel,
                Sites: sites.ToEquatableArray(),
                TrainableMembers: trainable.ToEquatableArray(),
                Components: components.ToEquatableArray(),
                HiddenNames: hidden.ToEquatableArray(),
                BaseModelName: isPeftModel ? PeftModelString(type, "BaseModelName") : null,
                TaskType: isPeftModel ? PeftModelString(type, "TaskType") : null,
                Merges: merges.ToEquatableArray());
        }

        private static ITypeSymbol? MemberType(ISymbol member) => member switch
        {
            IFieldSymbol field => field.Type,
            IPropertySymbol property => property.Type,
            _ => null,
        };

        private static bool IsNullable(ISymbol member) => member switch
        {
            IFieldSymbol field => field.NullableAnnotation == NullableAnnotation.Annotated,
            IPropertySymbol property => property.NullableAnnotation == NullableAnnotation.Annotated,
            _ => false,
        };

        /// <summary>Whether an adapter layer can be assigned to the member in <c>RegisterComponents</c> and read back.</summary>
        private static bool CanWire(ISymbol member) => member switch
        {
            IFieldSymbol field => !field.IsStatic && !field.IsReadOnly && !field.IsConst && field.RefKind == RefKind.None
                && TorchSymbols.IsModuleOfTensorToTensor(field.Type),
            IPropertySymbol property => !property.IsStatic && !property.IsIndexer && !property.IsAbstract
                && property.ExplicitInterfaceImplementations.IsEmpty && property.RefKind == RefKind.None
                && property.GetMethod is not null && property.SetMethod is { IsInitOnly: false }
                && TorchSymbols.IsModuleOfTensorToTensor(property.Type),
            _ => false,
        };

        /// <summary>Whether the member can be a <c>[Trainable]</c> module.</summary>
        private static bool CanTrain(ISymbol member) => member switch
        {
            IFieldSymbol field => !field.IsStatic && !field.IsConst && TorchSymbols.IsModuleType(field.Type),
            IPropertySymbol property => !property.IsStatic && !property.IsIndexer && property.GetMethod is not null
                && property.ExplicitInterfaceImplementations.IsEmpty && TorchSymbols.IsModuleType(property.Type),
            _ => false,
        };

        private static string ComponentNameOf(ISymbol member)
        {
            foreach (AttributeData attribute in member.GetAttributes())
            {
                if (!TorchSymbols.IsComponentNameAttribute(attribute.AttributeClass)) continue;
                foreach (KeyValuePair<string, TypedConstant> argument in attribute.NamedArguments)
                {
                    if (argument.Key == "Name" && argument.Value.Kind == TypedConstantKind.Primitive && argument.Value.Value is string { Length: > 0 } name)
                        return name;
                }
            }

            return member.Name;
        }

        // ---- one adapter -----------------------------------------------------------------------------------

        private static AdapterSiteModel? ParseSite(
            AttributeData attribute, KnownAttribute known, ISymbol member, string componentName, string fullName,
            long? inFeatures, long? outFeatures, CancellationToken cancellationToken)
        {
            IMethodSymbol? constructor = attribute.AttributeConstructor;
            if (constructor is null || constructor.Parameters.Length != attribute.ConstructorArguments.Length) return null;

            string adapterName = KnownAttributes.DefaultAdapterName;
            var options = new List<OptionModel>();
            for (int i = 0; i < constructor.Parameters.Length; i++)
            {
                string property = AttributeArguments.PascalCase(constructor.Parameters[i].Name);
                if (!Accept(property, attribute.ConstructorArguments[i], options, ref adapterName)) return null;
            }

            foreach (KeyValuePair<string, TypedConstant> argument in attribute.NamedArguments)
            {
                if (!Accept(argument.Key, argument.Value, options, ref adapterName)) return null;
            }

            return new AdapterSiteModel(
                MemberName: ConstantFormatter.EscapeIdentifier(member.Name),
                ComponentName: componentName,
                Path: fullName + "." + member.Name,
                NullableMember: IsNullable(member),
                Method: known.Method,
                AdapterName: adapterName,
                OptionsText: OptionsText(attribute, constructor, cancellationToken),
                Options: options.ToEquatableArray(),
                InFeatures: inFeatures,
                OutFeatures: outFeatures);
        }

        private static bool Accept(string property, TypedConstant value, List<OptionModel> options, ref string adapterName)
        {
            if (property.Length == 0) return false;
            if (property == KnownAttributes.TargetsArgument) return true;
            if (property == KnownAttributes.NameArgument)
            {
                if (value.Kind != TypedConstantKind.Primitive || value.Value is not string { Length: > 0 } name) return false;
                adapterName = name;
                return true;
            }

            string? code = ConstantFormatter.TryFormat(value);
            string escaped = ConstantFormatter.EscapeIdentifier(property);
            if (code is null || options.Exists(o => o.Property == escaped)) return false; // a duplicate argument is an error already
            options.Add(new OptionModel(escaped, code));
            return true;
        }

        /// <summary>The arguments as written (<c>rank: 4, Alpha = 8</c>), positional ones named after their parameter.</summary>
        private static string OptionsText(AttributeData attribute, IMethodSymbol constructor, CancellationToken cancellationToken)
        {
            if (attribute.ApplicationSyntaxReference?.GetSyntax(cancellationToken) is not AttributeSyntax { ArgumentList: { } list })
                return string.Empty;

            var parts = new List<string>();
            int position = 0;
            foreach (AttributeArgumentSyntax argument in list.Arguments)
            {
                string expression = Normalize(argument.Expression);
                string name;
                string text;
                if (argument.NameEquals is { } nameEquals)
                {
                    name = nameEquals.Name.Identifier.ValueText;
                    text = name + " = " + expression;
                }
                else
                {
                    if (argument.NameColon is { } nameColon) name = nameColon.Name.Identifier.ValueText;
                    else if (constructor.Parameters.IsEmpty) name = string.Empty;
                    else name = constructor.Parameters[Math.Min(position, constructor.Parameters.Length - 1)].Name;
                    position++;
                    text = name.Length == 0 ? expression : name + ": " + expression;
                }

                string property = AttributeArguments.PascalCase(name);
                if (property is KnownAttributes.NameArgument or KnownAttributes.TargetsArgument) continue;
                parts.Add(text);
            }

            return string.Join(", ", parts);
        }

        /// <summary>The expression's tokens as written, each run of whitespace and comments made one space.</summary>
        private static string Normalize(ExpressionSyntax expression)
        {
            var text = new StringBuilder();
            SyntaxToken previous = default;
            foreach (SyntaxToken token in expression.DescendantTokens())
            {
                if (token.IsMissing) continue;
                if (text.Length > 0 && (previous.HasTrailingTrivia || token.HasLeadingTrivia)) text.Append(' ');
                text.Append(token.Text);
                previous = token;
            }

            return text.ToString();
        }

        // ---- components: annotated classes this class holds --------------------------------------------------

        private static void CollectComponents(
            ITypeSymbol type, INamedTypeSymbol self, Compilation compilation, List<string> components, int depth, CancellationToken cancellationToken)
        {
            foreach (INamedTypeSymbol candidate in ClassTypesIn(type, depth))
            {
                INamedTypeSymbol definition = candidate.OriginalDefinition;
                if (SymbolEqualityComparer.Default.Equals(definition, self.OriginalDefinition)
                    || !compilation.IsSymbolAccessibleWithin(candidate, self)
                    || !IsEmitted(definition, compilation, cancellationToken))
                    continue;

                // Classes that hold each other would read each other's PeftInfo while their static initializers run
                // (one would see null): such a cycle is left out on both sides.
                if (ReachesBack(definition, self.OriginalDefinition, compilation, new HashSet<INamedTypeSymbol>(SymbolEqualityComparer.Default), cancellationToken))
                    continue;

                string reference = candidate.WithNullableAnnotation(NullableAnnotation.NotAnnotated).ToDisplayString(ConstantFormatter.GlobalFormat) + ".PeftInfo";
                if (!components.Contains(reference)) components.Add(reference);
            }
        }

        /// <summary>The class types a member type mentions (<see cref="PeftClassView.ClassTypesIn"/>) that name no erroneous type, so their <c>PeftInfo</c> can be referenced.</summary>
        private static IEnumerable<INamedTypeSymbol> ClassTypesIn(ITypeSymbol type, int depth) =>
            PeftClassView.ClassTypesIn(type, depth).Where(static named => !ContainsErrors(named));

        /// <summary>Whether <paramref name="start"/>'s components lead back to <paramref name="target"/>.</summary>
        private static bool ReachesBack(
            INamedTypeSymbol start, INamedTypeSymbol target, Compilation compilation, HashSet<INamedTypeSymbol> visited, CancellationToken cancellationToken)
        {
            if (!visited.Add(start)) return false;
            foreach (ISymbol member in start.GetMembers())
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (member is not (IFieldSymbol or IPropertySymbol) || member.IsStatic || member.IsImplicitlyDeclared || MemberType(member) is not { } memberType)
                    continue;
                foreach (INamedTypeSymbol candidate in ClassTypesIn(memberType, 0))
                {
                    INamedTypeSymbol definition = candidate.OriginalDefinition;
                    if (SymbolEqualityComparer.Default.Equals(definition, start)) continue;
                    if (SymbolEqualityComparer.Default.Equals(definition, target)) return true;
                    if (IsEmitted(definition, compilation, cancellationToken)
                        && ReachesBack(definition, target, compilation, visited, cancellationToken))
                        return true;
                }
            }

            return false;
        }

        private static bool ContainsErrors(ITypeSymbol type) => type switch
        {
            { TypeKind: TypeKind.Error } => true,
            IArrayTypeSymbol array => ContainsErrors(array.ElementType),
            INamedTypeSymbol named => named.TypeArguments.Any(ContainsErrors) || (named.ContainingType is { } outer && ContainsErrors(outer)),
            _ => false,
        };

        // ---- names -----------------------------------------------------------------------------------------

        private static TypeDeclarationModel Declaration(INamedTypeSymbol type)
        {
            string keyword = type switch
            {
                { IsRecord: true, TypeKind: TypeKind.Struct } => "record struct",
                { IsRecord: true } => "record",
                { TypeKind: TypeKind.Struct } => "struct",
                { TypeKind: TypeKind.Interface } => "interface",
                _ => "class",
            };

            var name = new StringBuilder(ConstantFormatter.EscapeIdentifier(type.Name));
            if (type.TypeParameters.Length > 0)
            {
                name.Append('<');
                for (int i = 0; i < type.TypeParameters.Length; i++)
                {
                    ITypeParameterSymbol parameter = type.TypeParameters[i];
                    if (i > 0) name.Append(", ");
                    if (parameter.Variance == VarianceKind.In) name.Append("in ");
                    else if (parameter.Variance == VarianceKind.Out) name.Append("out ");
                    name.Append(ConstantFormatter.EscapeIdentifier(parameter.Name));
                }

                name.Append('>');
            }

            return new TypeDeclarationModel(keyword, name.ToString());
        }

        /// <summary><c>Namespace.Outer.Inner.Peft.g.cs</c>; a generic type's arity follows a backtick, as in metadata.</summary>
        private static string HintName(INamedTypeSymbol type)
        {
            var parts = new List<string>();
            for (INamedTypeSymbol? current = type; current is not null; current = current.ContainingType)
                parts.Insert(0, current.Arity > 0 ? current.Name + "`" + current.Arity : current.Name);
            if (type.ContainingNamespace is { IsGlobalNamespace: false } ns)
                parts.Insert(0, ns.ToDisplayString(UserFormat));
            return string.Join(".", parts) + ".Peft.g.cs";
        }

        /// <summary>The generated members that hide an accessible inherited member, so they are declared <c>new</c>.</summary>
        private static List<string> HiddenNames(INamedTypeSymbol type, bool isPeftModel, Compilation compilation, CancellationToken cancellationToken)
        {
            var hidden = new List<string>();
            foreach (GeneratedMember generated in GeneratedMember.All)
            {
                if (generated.PeftModelOnly && !isPeftModel) continue;
                if (generated.IsOverride) continue;
                if (Hides(type, generated, compilation, cancellationToken)) hidden.Add(generated.Name);
            }

            return hidden;
        }

        private static bool Hides(INamedTypeSymbol type, GeneratedMember generated, Compilation compilation, CancellationToken cancellationToken)
        {
            for (INamedTypeSymbol? current = type.BaseType; current is not null; current = current.BaseType)
            {
                foreach (ISymbol member in current.GetMembers(generated.Name))
                {
                    if (member.IsImplicitlyDeclared || !compilation.IsSymbolAccessibleWithin(member, type)) continue;
                    if (generated.Parameters is null || member is not IMethodSymbol method) return true;
                    if (method.Parameters.Select(static p => p.Type.ToDisplayString(ConstantFormatter.GlobalFormat)).SequenceEqual(generated.Parameters.Value))
                        return true;
                }

                // A base class the generator also handles gets these members in its own generated file, which this
                // compilation does not show yet.
                if (current.OriginalDefinition is { } definition
                    && (!generated.PeftModelOnly || IsPeftModel(definition))
                    && (generated.Accessibility != Accessibility.Private || IsNestedIn(type, definition))
                    && SymbolEqualityComparer.Default.Equals(definition.ContainingAssembly, compilation.Assembly)
                    && IsEmitted(definition, compilation, cancellationToken))
                {
                    if (generated.Name != "__peftWired" || HasWireableAdapters(definition)) return true;
                }
            }

            return false;
        }

        /// <summary>Whether a generated <c>Merge{Name}()</c> hides an accessible inherited member (or a base class's own generated one).</summary>
        private static bool HidesMerge(INamedTypeSymbol type, string methodName, Compilation compilation, CancellationToken cancellationToken)
        {
            for (INamedTypeSymbol? current = type.BaseType; current is not null; current = current.BaseType)
            {
                foreach (ISymbol member in current.GetMembers(methodName))
                {
                    if (!member.IsImplicitlyDeclared && compilation.IsSymbolAccessibleWithin(member, type)) return true;
                }

                if (current.OriginalDefinition is { } definition
                    && SymbolEqualityComparer.Default.Equals(definition.ContainingAssembly, compilation.Assembly)
                    && IsEmitted(definition, compilation, cancellationToken)
                    && MergeParser.DeclaredMethodNames(definition).Contains(methodName))
                    return true;
            }

            return false;
        }

        private static bool IsNestedIn(INamedTypeSymbol type, INamedTypeSymbol outer)
        {
            for (INamedTypeSymbol? current = type.ContainingType; current is not null; current = current.ContainingType)
            {
                if (SymbolEqualityComparer.Default.Equals(current.OriginalDefinition, outer)) return true;
            }

            return false;
        }

        private static bool HasWireableAdapters(INamedTypeSymbol type)
        {
            // Conservative: the base declares __peftWired when it has at least one wireable adapter member.
            bool classLevel = type.GetAttributes().Any(static a => KnownAttributes.Find(a) is { Kind: AttributeKind.Adapter });
            foreach (ISymbol member in type.GetMembers())
            {
                if (member is not (IFieldSymbol or IPropertySymbol) || member.IsImplicitlyDeclared || !CanWire(member)) continue;
                if (classLevel || member.GetAttributes().Any(static a => KnownAttributes.Find(a) is { Kind: AttributeKind.Adapter }))
                    return true;
            }

            return false;
        }
    }
}

using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Diagnostics;
using Peft.Generators.Parse;

namespace Peft.Generators.Diagnostics
{
    /// <summary>
    /// Checks each adapter site: the member can hold the adapter layer (PEFT002, PEFT003), the rank or block is at
    /// least 1 (PEFT004) and fits the layer's known shape (PEFT005, PEFT006), dropouts lie in [0, 1) (PEFT007), names
    /// are distinct (PEFT008), the member holds a Linear of one method's adapters (PEFT016) and the class's adapters of
    /// one name agree on what PEFT's config holds once per adapter (PEFT017).
    /// </summary>
    [DiagnosticAnalyzer(LanguageNames.CSharp)]
    public sealed class AdapterMemberAnalyzer : DiagnosticAnalyzer
    {
        private const string ModuleOfTensor = "Module<Tensor, Tensor>";

        /// <inheritdoc/>
        public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics { get; } = ImmutableArray.Create(
            DiagnosticDescriptors.MemberTypeCannotHoldAdapter,
            DiagnosticDescriptors.MemberCannotBeAssigned,
            DiagnosticDescriptors.ReadOnlyField,
            DiagnosticDescriptors.PropertyWithoutSetter,
            DiagnosticDescriptors.RankTooSmall,
            DiagnosticDescriptors.BlockTooSmall,
            DiagnosticDescriptors.RankTooLarge,
            DiagnosticDescriptors.SequentialRankTooLarge,
            DiagnosticDescriptors.BoneBlockDoesNotDivide,
            DiagnosticDescriptors.BatBlockDoesNotDivide,
            DiagnosticDescriptors.DropoutOutOfRange,
            DiagnosticDescriptors.ProbabilityOutOfRange,
            DiagnosticDescriptors.DuplicateAdapterName,
            DiagnosticDescriptors.EmptyAdapterName,
            DiagnosticDescriptors.UnsupportedLayer,
            DiagnosticDescriptors.MixedMethods,
            DiagnosticDescriptors.SharedConfigMismatch,
            DiagnosticDescriptors.SparseRankTooLarge,
            DiagnosticDescriptors.NegativeOption,
            DiagnosticDescriptors.TotalStepsMissing,
            DiagnosticDescriptors.ScheduleEmpty,
            DiagnosticDescriptors.InitRankBelowTarget,
            DiagnosticDescriptors.BetaOutOfRange,
            DiagnosticDescriptors.IncreLoRARanks,
            DiagnosticDescriptors.IntervalTooSmall,
            DiagnosticDescriptors.NegativeStepCount);

        /// <inheritdoc/>
        public override void Initialize(AnalysisContext context)
        {
            context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
            context.EnableConcurrentExecution();
            context.RegisterSymbolAction(AnalyzeType, SymbolKind.NamedType);
        }

        private static void AnalyzeType(SymbolAnalysisContext context)
        {
            if (context.Symbol is not INamedTypeSymbol type || PeftClassView.Create(type) is not { } view || view.Sites.Count == 0) return;
            CancellationToken cancellationToken = context.CancellationToken;
            var shapes = new ShapeReader(type, context.Compilation, cancellationToken);

            // Bone's fix offers blocks that divide every target of a class-level attribute whose shape is known.
            var knownShapes = new Dictionary<ISymbol, (long? In, long? Out)>(SymbolEqualityComparer.Default);
            foreach (var (member, _) in view.Sites) knownShapes[member] = shapes.Read(member);

            foreach (var (member, uses) in view.Sites)
            {
                cancellationToken.ThrowIfCancellationRequested();
                string site = view.SiteOf(member);
                CheckMember(context, member, site, uses[0]);

                (long? inFeatures, long? outFeatures) = knownShapes[member];
                CheckLayer(context, shapes, member, site, uses);

                var names = new Dictionary<string, AdapterUse>(StringComparer.Ordinal);
                AdapterUse? first = null;
                foreach (AdapterUse use in uses)
                {
                    Location location = UseLocation(use, member, cancellationToken);
                    CheckValues(context, use, site, inFeatures, outFeatures, view, knownShapes);

                    if (use.Name is null)
                    {
                        context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.EmptyAdapterName,
                            AttributeArguments.ArgumentLocation(use.Attribute, KnownAttributes.NameArgument, cancellationToken), site, use.Method));
                    }
                    else if (names.TryGetValue(use.Name, out AdapterUse? earlier))
                    {
                        context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.DuplicateAdapterName,
                            use.FromClass ? location : AttributeArguments.ArgumentLocation(use.Attribute, KnownAttributes.NameArgument, cancellationToken),
                            site, use.Name, earlier.Method, use.Method));
                    }
                    else
                    {
                        names.Add(use.Name, use);
                    }

                    if (first is null) first = use;
                    else if (first.Family != use.Family)
                        context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.MixedMethods, location, site, first.Method, use.Method));
                }
            }

            CheckSharedConfig(context, view);
        }

        // ---- PEFT017 -------------------------------------------------------------------------------------------

        /// <summary>
        /// Adapters of one name on different members become one PEFT adapter, whose config holds one method and one
        /// value of each shared field (<see cref="AdapterConfigFields"/>, the table the runtime's settings write): each
        /// later member is compared with the first that uses the name, and the first field that differs is reported
        /// on the later one, as the runtime words it when the model is built.
        /// </summary>
        private static void CheckSharedConfig(SymbolAnalysisContext context, PeftClassView view)
        {
            CancellationToken cancellationToken = context.CancellationToken;
            var firsts = new Dictionary<string, (ISymbol Member, AdapterUse Use, AdapterConfigFields.Method Method)>(StringComparer.Ordinal);
            foreach (var (member, uses) in view.Sites)
            {
                var here = new HashSet<string>(StringComparer.Ordinal);
                foreach (AdapterUse use in uses)
                {
                    // An empty name or a second adapter of one name on a member is PEFT008's.
                    if (use.Name is null || !here.Add(use.Name) || AdapterConfigFields.Find(use.Method) is not { } method) continue;
                    if (!firsts.TryGetValue(use.Name, out var first))
                    {
                        firsts.Add(use.Name, (member, use, method));
                        continue;
                    }

                    if (FirstDifference(first.Method, first.Use, method, use) is not { } difference) continue;
                    var properties = ImmutableDictionary<string, string?>.Empty.Add(DiagnosticIds.MemberNameProperty, member.Name);
                    context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.SharedConfigMismatch,
                        UseLocation(use, member, cancellationToken), properties,
                        view.SiteOf(member), use.Name, difference.Key, difference.Value, difference.FirstValue, view.SiteOf(first.Member)));
                }
            }
        }

        /// <summary>The first config field in which <paramref name="use"/> differs from <paramref name="first"/>; null when none does (or a value is unknown).</summary>
        private static (string Key, string Value, string FirstValue)? FirstDifference(
            AdapterConfigFields.Method firstMethod, AdapterUse first, AdapterConfigFields.Method method, AdapterUse use)
        {
            if (firstMethod.PeftType != method.PeftType)
                return (AdapterConfigFields.PeftTypeKey, AdapterConfigFields.Json(method.PeftType), AdapterConfigFields.Json(firstMethod.PeftType));
            foreach (AdapterConfigFields.Field field in method.Shared)
            {
                AdapterConfigFields.Field? firstField = firstMethod.Shared.FirstOrDefault(f => f.Key == field.Key);
                if (firstField is null) continue;
                if (ConfigValue(use, field) is not { } value || ConfigValue(first, firstField) is not { } firstValue) continue;
                if (value != firstValue) return (field.Key, value, firstValue);
            }

            return null;
        }

        /// <summary>What the config would hold for <paramref name="field"/>, as JSON text; null when the argument's value is not known.</summary>
        private static string? ConfigValue(AdapterUse use, AdapterConfigFields.Field field)
        {
            if (field.Property is null) return field.DefaultJson;
            if (!AttributeArguments.TryGet(use.Attribute, field.Property, out TypedConstant value))
                return HasArgument(use.Attribute, field.Property) ? null : field.DefaultJson;
            return value.Kind switch
            {
                TypedConstantKind.Enum when field.EnumJson.Length > 0 =>
                    value.Value is int index && index >= 0 && index < field.EnumJson.Length ? field.EnumJson[index] : null,
                TypedConstantKind.Primitive when field.IntegralAsInteger && value.Value is double d && d == Math.Floor(d) && Math.Abs(d) < 1e15 =>
                    PeftClassView.Invariant((long)d),
                TypedConstantKind.Primitive when value.Value is not null => AdapterConfigFields.Json(value.Value),
                _ => null,
            };
        }

        /// <summary>Whether the attribute gives <paramref name="property"/> at all (an erroneous argument is unknown, not the default).</summary>
        private static bool HasArgument(AttributeData attribute, string property)
        {
            if (HasNamedArgument(attribute, property)) return true;
            IMethodSymbol? constructor = attribute.AttributeConstructor;
            return constructor is null || constructor.Parameters.Any(p => AttributeArguments.PascalCase(p.Name) == property);
        }

        /// <summary>Where a use is written: the attribute on the member, or the Targets element naming it.</summary>
        private static Location UseLocation(AdapterUse use, ISymbol member, CancellationToken cancellationToken) =>
            use.FromClass
                ? AttributeArguments.TargetLocation(use.Attribute, member.Name, cancellationToken)
                : AttributeArguments.AttributeLocation(use.Attribute, cancellationToken);

        // ---- PEFT002 / PEFT003 ---------------------------------------------------------------------------------

        private static void CheckMember(SymbolAnalysisContext context, ISymbol member, string site, AdapterUse use)
        {
            CancellationToken cancellationToken = context.CancellationToken;
            SyntaxNode? declaration = member.DeclaringSyntaxReferences.FirstOrDefault()?.GetSyntax(cancellationToken);
            Location memberLocation = member.Locations.FirstOrDefault() ?? Location.None;
            Location typeLocation = declaration switch
            {
                VariableDeclaratorSyntax { Parent: VariableDeclarationSyntax variables } => variables.Type.GetLocation(),
                PropertyDeclarationSyntax property => property.Type.GetLocation(),
                _ => memberLocation,
            };

            ITypeSymbol type;
            string? cannotAssign = null;
            switch (member)
            {
                case IFieldSymbol field:
                    type = field.Type;
                    if (field.IsStatic && !field.IsConst) cannotAssign = "static";
                    if (field.IsReadOnly && !field.IsConst)
                    {
                        Location readonlyLocation = declaration?.Parent?.Parent is FieldDeclarationSyntax fieldDeclaration
                            && fieldDeclaration.Modifiers.FirstOrDefault(m => m.IsKind(SyntaxKind.ReadOnlyKeyword)) is { RawKind: not 0 } keyword
                            ? keyword.GetLocation() : memberLocation;
                        context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.ReadOnlyField, readonlyLocation, site, use.Method));
                    }

                    break;
                case IPropertySymbol property:
                    type = property.Type;
                    if (property.IsIndexer) cannotAssign = "indexer";
                    else if (property.IsStatic) cannotAssign = "static";
                    else if (property.IsAbstract) cannotAssign = "abstract";
                    else if (!property.ExplicitInterfaceImplementations.IsEmpty) cannotAssign = "explicit interface";
                    else if (property.GetMethod is null) cannotAssign = "write-only";
                    else if (property.RefKind != RefKind.None) cannotAssign = "ref-returning";
                    else if (property.SetMethod is null or { IsInitOnly: true })
                        context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.PropertyWithoutSetter, memberLocation, site, use.Method));
                    break;
                default:
                    return;
            }

            if (cannotAssign is not null)
                context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.MemberCannotBeAssigned, memberLocation, site, use.Method, cannotAssign));

            if (type.TypeKind != TypeKind.Error && !TorchSymbols.IsModuleOfTensorToTensor(type))
            {
                string shown = type.ToDisplayString(SymbolDisplayFormat.MinimallyQualifiedFormat);
                context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.MemberTypeCannotHoldAdapter, typeLocation, site, use.Method, shown));
            }
        }

        // ---- PEFT016 -------------------------------------------------------------------------------------------

        /// <summary>
        /// The first constructed layer that some of the member's methods cannot wrap (by the rule table's
        /// <see cref="AdapterConfigFields.Method.Layers"/>) is reported once for each such method.
        /// </summary>
        private static void CheckLayer(SymbolAnalysisContext context, ShapeReader shapes, ISymbol member, string site, List<AdapterUse> uses)
        {
            var layersOf = new List<(string Method, List<INamedTypeSymbol> Layers)>();
            foreach (string method in uses.Select(u => u.Method).Distinct())
            {
                if (AdapterConfigFields.Find(method) is not { } rules) continue;
                var layers = rules.Layers.Select(context.Compilation.GetTypeByMetadataName).OfType<INamedTypeSymbol>().ToList();
                if (layers.Count > 0) layersOf.Add((method, layers)); // a compilation without the layer types: nothing to compare
            }

            if (layersOf.Count == 0) return;
            foreach (var (value, type) in shapes.ConstructedLayers(member))
            {
                if (type is not INamedTypeSymbol { TypeKind: TypeKind.Class } named || !TorchSymbols.IsModuleType(named)) continue;
                // A supported layer, or a base type that may hold one, is fine.
                var unsupported = layersOf.Where(m => !m.Layers.Any(layer => DerivesFrom(named, layer) || DerivesFrom(layer, named))).ToList();
                if (unsupported.Count == 0) continue;
                foreach (var (method, _) in unsupported)
                    context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.UnsupportedLayer, value.GetLocation(), site, method, named.MetadataName));
                return;
            }
        }

        private static bool DerivesFrom(INamedTypeSymbol type, INamedTypeSymbol baseType)
        {
            for (INamedTypeSymbol? current = type; current is not null; current = current.BaseType)
            {
                if (SymbolEqualityComparer.Default.Equals(current.OriginalDefinition, baseType.OriginalDefinition)) return true;
            }

            return false;
        }

        // ---- PEFT004 / PEFT005 / PEFT006 / PEFT007 -------------------------------------------------------------

        /// <summary>Reports a diagnostic at the argument that sets <c>property</c> (else the attribute), its message arguments formatted invariantly.</summary>
        private delegate void ArgumentReport(DiagnosticDescriptor descriptor, string property, params object[] args);

        private static void CheckValues(
            SymbolAnalysisContext context, AdapterUse use, string site, long? inFeatures, long? outFeatures,
            PeftClassView view, Dictionary<ISymbol, (long? In, long? Out)> knownShapes)
        {
            CancellationToken cancellationToken = context.CancellationToken;
            AttributeData attribute = use.Attribute;
            void Report(DiagnosticDescriptor descriptor, string property, params object[] args) =>
                context.ReportDiagnostic(Diagnostic.Create(descriptor, AttributeArguments.ArgumentLocation(attribute, property, cancellationToken),
                    args.Select(PeftClassView.Invariant).ToArray()));

            // The size arguments and their bounds come from the rule table (AdapterConfigFields.Method.Sizes).
            IMethodSymbol? constructor = attribute.AttributeConstructor;
            AdapterConfigFields.Method? rules = AdapterConfigFields.Find(use.Method);
            if (rules is not null && constructor is not null && constructor.Parameters.Length == attribute.ConstructorArguments.Length)
            {
                for (int i = 0; i < constructor.Parameters.Length; i++)
                {
                    string parameter = constructor.Parameters[i].Name;
                    string property = AttributeArguments.PascalCase(parameter);
                    if (AdapterConfigFields.SizeOf(rules, parameter) is not { } size) continue;
                    if (attribute.ConstructorArguments[i] is not { Kind: TypedConstantKind.Primitive, Value: int value }) continue;

                    if (size.Bound == AdapterConfigFields.Bound.BlockDividingIn)
                    {
                        if (value < 1) Report(DiagnosticDescriptors.BlockTooSmall, property, site, use.Method, value);
                        else CheckBlock(context, use, site, value, inFeatures, outFeatures, view, knownShapes);
                        continue;
                    }

                    // rank → "LoRA", parallelRank → "Hydra parallel", as the runtime words it.
                    string label = parameter == "rank" ? use.Method
                        : use.Method + " " + (parameter.EndsWith("Rank", StringComparison.Ordinal) ? parameter.Substring(0, parameter.Length - 4) : parameter).ToLowerInvariant();
                    if (value < 1)
                    {
                        Report(DiagnosticDescriptors.RankTooSmall, property, site, label, value);
                        continue;
                    }

                    if (inFeatures is not { } i1 || outFeatures is not { } o1) continue;
                    long max = Math.Min(i1, o1);
                    if (size.Bound == AdapterConfigFields.Bound.RankWithinOut)
                    {
                        if (value > o1) Report(DiagnosticDescriptors.SequentialRankTooLarge, property, site, use.Method, value, o1);
                    }
                    else if (size.Bound == AdapterConfigFields.Bound.RankWithinInAndOut)
                    {
                        if (value > max) Report(DiagnosticDescriptors.RankTooLarge, property, site, label, value, i1, o1, max);
                    }
                    else if (size.Bound == AdapterConfigFields.Bound.RankWithinSparseBudget && i1 > 0 && o1 > 0 && i1 <= 1L << 30 && o1 <= 1L << 30)
                    {
                        if ((long)value * (i1 + o1) > i1 * o1)
                            Report(DiagnosticDescriptors.SparseRankTooLarge, property, site, label, value, i1, o1, (long)value * (i1 + o1), i1 * o1, i1 * o1 / (i1 + o1));
                    }
                }
            }

            // PEFT024 / PEFT029: the rule table's step counts (LaMDA's freezing schedule) and other non-negative options
            // (SaRA's) are at least 0.
            if (rules is not null)
            {
                foreach (KeyValuePair<string, TypedConstant> argument in attribute.NamedArguments)
                {
                    if (Array.IndexOf(rules.StepCounts, argument.Key) < 0 || argument.Value is not { Kind: TypedConstantKind.Primitive, Value: int steps } || steps >= 0) continue;
                    Report(DiagnosticDescriptors.NegativeStepCount, argument.Key, site, use.Method, argument.Key, steps);
                }

                foreach (KeyValuePair<string, TypedConstant> argument in attribute.NamedArguments)
                {
                    if (Array.IndexOf(rules.NonNegative, argument.Key) < 0 || argument.Value.Kind != TypedConstantKind.Primitive) continue;
                    bool negative = argument.Value.Value switch { double d => !(d >= 0), int n => n < 0, _ => false };
                    if (negative) Report(DiagnosticDescriptors.NegativeOption, argument.Key, site, use.Method, Words(argument.Key), argument.Value.Value!);
                }
            }

            foreach (KeyValuePair<string, TypedConstant> argument in attribute.NamedArguments)
            {
                if (!argument.Key.EndsWith("Dropout", StringComparison.Ordinal) || argument.Value is not { Kind: TypedConstantKind.Primitive, Value: double dropout }) continue;
                if (dropout >= 0 && dropout < 1) continue;
                if (argument.Key == "Dropout") Report(DiagnosticDescriptors.DropoutOutOfRange, argument.Key, site, dropout);
                else Report(DiagnosticDescriptors.ProbabilityOutOfRange, argument.Key, site, use.Method, Words(argument.Key), dropout);
            }

            if (rules is not null) CheckSchedule(use, site, rules, Report);
        }

        // ---- PEFT018–PEFT023 -----------------------------------------------------------------------------------

        /// <summary>
        /// The rules of a method whose ranks change during training (<see cref="AdapterConfigFields.RankSchedule"/>),
        /// each reported once its values are known (a non-constant argument is skipped), in the runtime's words.
        /// </summary>
        private static void CheckSchedule(AdapterUse use, string site, AdapterConfigFields.Method rules, ArgumentReport report)
        {
            if (rules.Schedule == AdapterConfigFields.RankSchedule.None) return;
            AttributeData attribute = use.Attribute;
            double? Value(string property) => ScheduleValue(attribute, rules, property);
            string method = use.Method;

            foreach (string beta in new[] { "Beta1", "Beta2" })
            {
                if (Value(beta) is { } b && !(b > 0 && b < 1)) report(DiagnosticDescriptors.BetaOutOfRange, beta, site, method, beta, b);
            }

            double? target = Value("TargetRank");
            if (rules.Schedule == AdapterConfigFields.RankSchedule.Pruned)
            {
                if (Value("DeltaT") is { } deltaT && deltaT < 1) report(DiagnosticDescriptors.IntervalTooSmall, "DeltaT", site, method, "DeltaT", deltaT);
                if (Value("InitRank") is { } init && target is { } t && t >= 1 && init < t)
                    report(DiagnosticDescriptors.InitRankBelowTarget, "InitRank", site, method, init, t);
                if (!HasNamedArgument(attribute, "TotalSteps"))
                {
                    report(DiagnosticDescriptors.TotalStepsMissing, "TotalSteps", site, 0);
                    return;
                }

                if (Value("TotalSteps") is not { } total) return;
                if (total < 1)
                {
                    report(DiagnosticDescriptors.TotalStepsMissing, "TotalSteps", site, total);
                    return;
                }

                if (Value("Tinit") is { } tinit && Value("Tfinal") is { } tfinal && tinit >= total - tfinal)
                    report(DiagnosticDescriptors.ScheduleEmpty, HasNamedArgument(attribute, "Tinit") ? "Tinit" : "TotalSteps", site, tinit, total, tfinal, total - tfinal);
            }
            else
            {
                foreach (string count in new[] { "Interval", "TopH", "RankIncrement" })
                {
                    if (Value(count) is { } v && v < 1) report(DiagnosticDescriptors.IntervalTooSmall, count, site, method, count, v);
                }

                if (Value("InitRank") is { } init && target is { } t && t >= 1 && Value("MaxRank") is { } max && !(init <= t && t <= max))
                    report(DiagnosticDescriptors.IncreLoRARanks, init > t ? "InitRank" : "MaxRank", site, init, t, max);
            }
        }

        private static bool HasNamedArgument(AttributeData attribute, string property) =>
            attribute.NamedArguments.Any(a => a.Key == property);

        /// <summary>An argument's value as a number: given (constant), else the method's default; null when unknown.</summary>
        private static double? ScheduleValue(AttributeData attribute, AdapterConfigFields.Method rules, string property)
        {
            if (AttributeArguments.TryGet(attribute, property, out TypedConstant value))
            {
                return value.Kind == TypedConstantKind.Primitive ? value.Value switch
                {
                    int i => i,
                    double d => d,
                    _ => null,
                } : null;
            }

            // An erroneous named argument, or an attribute whose constructor did not bind, is unknown, not the default.
            if (HasNamedArgument(attribute, property) || attribute.AttributeConstructor is null) return null;
            foreach ((string name, double v) in rules.Defaults)
            {
                if (name == property) return v;
            }

            AdapterConfigFields.Field? field = rules.Shared.FirstOrDefault(f => f.Property == property);
            return field is not null && double.TryParse(field.DefaultJson, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double parsed)
                ? parsed : (double?)null;
        }

        /// <summary><c>RankDropout</c> → <c>rank dropout</c>, as the runtime words it.</summary>
        private static string Words(string pascal)
        {
            var text = new System.Text.StringBuilder();
            foreach (char c in pascal)
            {
                if (char.IsUpper(c) && text.Length > 0) text.Append(' ');
                text.Append(char.ToLowerInvariant(c));
            }

            return text.ToString();
        }

        /// <summary>PEFT006 for a <see cref="AdapterConfigFields.Bound.BlockDividingIn"/> size (Bone, PEFT's MiSS): <c>Variant = Bat</c> (1) also divides the out-features.</summary>
        private static void CheckBlock(
            SymbolAnalysisContext context, AdapterUse use, string site, int block, long? inFeatures, long? outFeatures,
            PeftClassView view, Dictionary<ISymbol, (long? In, long? Out)> knownShapes)
        {
            // Past 2^40 features the divisor search is not worth it (no real layer is that wide).
            if (inFeatures is not { } i || outFeatures is not { } o || i < 1 || o < 1 || i > 1L << 40 || o > 1L << 40) return;
            bool bat = AttributeArguments.Int(use.Attribute, "Variant") == 1;
            if (i % block == 0 && (!bat || o % block == 0)) return;

            long n = bat ? Gcd(i, o) : i;
            long nearest = Divisors.Nearest(n, block);

            // The fix must suit every site the attribute reaches: for a class-level attribute, every target of known shape.
            long common = n;
            if (use.FromClass)
            {
                foreach (var (member, uses) in view.Sites)
                {
                    if (!uses.Any(u => ReferenceEquals(u.Attribute, use.Attribute))) continue;
                    if (knownShapes[member] is { In: { } ti, Out: { } to } && ti > 0 && to > 0 && ti <= 1L << 40 && to <= 1L << 40) common = Gcd(common, bat ? Gcd(ti, to) : ti);
                }
            }

            var properties = ImmutableDictionary<string, string?>.Empty.Add(
                DiagnosticIds.BlockCandidatesProperty,
                string.Join(",", Divisors.Candidates(common, block).Select(d => PeftClassView.Invariant(d))));

            Location location = AttributeArguments.ArgumentLocation(use.Attribute, "Block", context.CancellationToken);
            context.ReportDiagnostic(bat
                ? Diagnostic.Create(DiagnosticDescriptors.BatBlockDoesNotDivide, location, properties, site, Inv(block), Inv(i), Inv(o), Inv(nearest))
                : Diagnostic.Create(DiagnosticDescriptors.BoneBlockDoesNotDivide, location, properties, site, Inv(block), Inv(i), Inv(o), Inv(nearest)));
        }

        private static string Inv(long value) => PeftClassView.Invariant(value);

        private static long Gcd(long a, long b) => b == 0 ? a : Gcd(b, a % b);
    }

    /// <summary>Divisors for PEFT006, in O(√n) (the runtime's linear scan would stall the IDE on a huge constant).</summary>
    internal static class Divisors
    {
        public static List<long> Of(long n)
        {
            var small = new List<long>();
            var large = new List<long>();
            for (long d = 1; d * d <= n; d++)
            {
                if (n % d != 0) continue;
                small.Add(d);
                if (d != n / d) large.Add(n / d);
            }

            large.Reverse();
            small.AddRange(large);
            return small;
        }

        /// <summary>The divisor of <paramref name="n"/> nearest to <paramref name="block"/>, the smaller on a tie: <see cref="PeftMessages.NearestDivisor"/>.</summary>
        public static long Nearest(long n, long block)
        {
            long best = 1;
            foreach (long d in Of(n))
            {
                if (Math.Abs(d - block) < Math.Abs(best - block)) best = d;
            }

            return best;
        }

        /// <summary>The nearest divisors below and above <paramref name="block"/> (those that exist), nearest first.</summary>
        public static List<long> Candidates(long n, long block)
        {
            long? below = null, above = null;
            foreach (long d in Of(n))
            {
                if (d < block) below = d;
                else if (d > block && above is null) above = d;
            }

            var result = new List<long>();
            if (below is { } b) result.Add(b);
            if (above is { } a)
            {
                if (below is { } bb && a - block < block - bb) result.Insert(0, a);
                else result.Add(a);
            }

            return result;
        }
    }
}

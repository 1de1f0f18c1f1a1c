using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;
using Peft.Generators.Parse;

namespace Peft.Generators.Diagnostics
{
    /// <summary>
    /// Checks <c>[MergeWith]</c>: every named adapter exists where the merge applies and some layer holds them all
    /// (PEFT009), weights pair up with adapters and are finite (PEFT010), the method fits the adapters (PEFT011),
    /// density and CommonFraction lie in (0, 1] (PEFT012), Rank is not negative (PEFT004), the new adapter's name is free
    /// (PEFT008), the method can run in the space asked for (PEFT032), LoRA-LEGO has its Rank (PEFT033), Core Space and
    /// LoRA-LEGO get plain LoRA sources (PEFT011), and Iso-C / Iso-CTS over LoRA sources in full space warn that the result
    /// is full-rank (PEFT034).
    /// </summary>
    /// <remarks>
    /// On a field the sources are that field's adapters; on a class, those of its fields and of the annotated classes
    /// the compiler can see it hold (member types, their type arguments and array elements, and the types its fields
    /// are constructed with). Where the class holds a module type from another assembly, whose private adapters the
    /// compiler cannot read, an unfound name is not reported.
    /// </remarks>
    [DiagnosticAnalyzer(LanguageNames.CSharp)]
    public sealed class MergeWithAnalyzer : DiagnosticAnalyzer
    {
        private const int MaxComponentDepth = PeftClassView.MaxTypeDepth;

        /// <inheritdoc/>
        public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics { get; } = ImmutableArray.Create(
            DiagnosticDescriptors.UnknownMergeSource,
            DiagnosticDescriptors.MergeWithNoAdapters,
            DiagnosticDescriptors.MergeSourcesApart,
            DiagnosticDescriptors.WeightsCountMismatch,
            DiagnosticDescriptors.WeightNotFinite,
            DiagnosticDescriptors.MergeNeedsLoRA,
            DiagnosticDescriptors.ModelStockNeedsTwo,
            DiagnosticDescriptors.DensityOutOfRange,
            DiagnosticDescriptors.MergeRankNegative,
            DiagnosticDescriptors.EmptyAdapterName,
            DiagnosticDescriptors.MergeNameTaken,
            DiagnosticDescriptors.MergeNeedsLoRAFactors,
            DiagnosticDescriptors.CommonFractionOutOfRange,
            DiagnosticDescriptors.MergeSpaceMismatch,
            DiagnosticDescriptors.MergeRankRequired,
            DiagnosticDescriptors.FullRankMerge);

        /// <inheritdoc/>
        public override void Initialize(AnalysisContext context)
        {
            context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
            context.EnableConcurrentExecution();
            context.RegisterSymbolAction(AnalyzeType, SymbolKind.NamedType);
        }

        /// <summary>One adapter a merge can draw on.</summary>
        private readonly struct Source
        {
            public Source(string site, string name, string method)
            {
                Site = site;
                Name = name;
                Method = method;
            }

            public string Site { get; }

            public string Name { get; }

            public string Method { get; }
        }

        private static void AnalyzeType(SymbolAnalysisContext context)
        {
            if (context.Symbol is not INamedTypeSymbol type || PeftClassView.Create(type) is not { } view) return;
            if (view.ClassMerges.Count == 0 && view.MemberMerges.Count == 0) return;
            CancellationToken cancellationToken = context.CancellationToken;

            if (view.ClassMerges.Count > 0)
            {
                var sources = new List<Source>();
                bool opaque = false;
                Collect(view, context.Compilation, sources, ref opaque, new HashSet<INamedTypeSymbol>(SymbolEqualityComparer.Default), 0, cancellationToken);
                var created = new HashSet<string>(StringComparer.Ordinal);
                foreach (AttributeData merge in view.ClassMerges)
                    Check(context, merge, view.FullName, sources, opaque, created);
            }

            foreach (var group in view.MemberMerges.GroupBy(m => m.Member, SymbolEqualityComparer.Default))
            {
                ISymbol member = group.Key!;
                string site = view.SiteOf(member);
                var sources = new List<Source>();
                foreach (var (siteMember, uses) in view.Sites)
                {
                    if (!SymbolEqualityComparer.Default.Equals(siteMember, member)) continue;
                    foreach (AdapterUse use in uses)
                    {
                        if (use.Name is { } name) sources.Add(new Source(site, name, use.Method));
                    }
                }

                var created = new HashSet<string>(StringComparer.Ordinal);
                foreach (var (_, merge) in group) Check(context, merge, site, sources, opaque: false, created);
            }
        }

        private static void Check(SymbolAnalysisContext context, AttributeData merge, string scope, List<Source> sources, bool opaque, HashSet<string> created)
        {
            CancellationToken cancellationToken = context.CancellationToken;
            var declared = new HashSet<string>(sources.Select(s => s.Name), StringComparer.Ordinal);
            string declaredList = declared.Count == 0 ? "none" : string.Join(", ", declared.OrderBy(n => n, StringComparer.Ordinal));

            // PEFT009: the sources.
            List<string?>? names = null;
            if (AttributeArguments.TryGet(merge, "Adapters", out TypedConstant adapters) && adapters.Kind == TypedConstantKind.Array && !adapters.IsNull)
            {
                names = adapters.Values.Select(v => v.Value as string).ToList();
                if (names.Count == 0)
                {
                    context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.MergeWithNoAdapters,
                        AttributeArguments.AttributeLocation(merge, cancellationToken), scope));
                }

                for (int i = 0; i < names.Count; i++)
                {
                    if (names[i] is { } name && declared.Contains(name)) continue;
                    if (opaque) continue;
                    context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.UnknownMergeSource,
                        AttributeArguments.ParamsElementLocation(merge, i, cancellationToken), scope, names[i] ?? "null", declaredList));
                }
            }

            // PEFT010: weights.
            if (AttributeArguments.TryGet(merge, "Weights", out TypedConstant weights) && weights.Kind == TypedConstantKind.Array && !weights.IsNull)
            {
                if (names is not null && weights.Values.Length != names.Count)
                {
                    context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.WeightsCountMismatch,
                        AttributeArguments.ArgumentLocation(merge, "Weights", cancellationToken), scope,
                        PeftClassView.Invariant(weights.Values.Length), PeftClassView.Invariant(names.Count)));
                }

                for (int i = 0; i < weights.Values.Length; i++)
                {
                    if (weights.Values[i].Value is not double weight || !(double.IsNaN(weight) || double.IsInfinity(weight))) continue;
                    string adapter = names is not null && i < names.Count ? names[i] ?? "null" : "#" + PeftClassView.Invariant(i + 1);
                    context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.WeightNotFinite,
                        AttributeArguments.NamedElementLocation(merge, "Weights", i, cancellationToken), scope, PeftClassView.Invariant(weight), adapter));
                }
            }

            // PEFT012: density.
            if (AttributeArguments.Double(merge, "Density") is { } density && !(density > 0 && density <= 1))
            {
                context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.DensityOutOfRange,
                    AttributeArguments.ArgumentLocation(merge, "Density", cancellationToken), scope, PeftClassView.Invariant(density)));
            }

            // PEFT012: Iso-CTS's common fraction.
            if (AttributeArguments.Double(merge, "CommonFraction") is { } fraction && !(fraction > 0 && fraction <= 1))
            {
                context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.CommonFractionOutOfRange,
                    AttributeArguments.ArgumentLocation(merge, "CommonFraction", cancellationToken), scope, PeftClassView.Invariant(fraction)));
            }

            // PEFT004: rank of the result.
            int? rank = AttributeArguments.Int(merge, "Rank");
            if (rank is < 0)
            {
                context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.MergeRankNegative,
                    AttributeArguments.ArgumentLocation(merge, "Rank", cancellationToken), scope, PeftClassView.Invariant(rank.Value)));
            }

            // PEFT009: some layer must hold every source (only when each is declared: an unknown one is reported above).
            var distinctNames = names?.OfType<string>().Distinct(StringComparer.Ordinal).ToList();
            if (!opaque && distinctNames is { Count: > 1 } && distinctNames.Count == names!.Count && distinctNames.All(declared.Contains)
                && !sources.GroupBy(s => s.Site, StringComparer.Ordinal).Any(site => distinctNames.All(n => site.Any(s => s.Name == n))))
            {
                string where = string.Join("; ", distinctNames.Select(n =>
                    "'" + n + "' at " + string.Join(", ", sources.Where(s => s.Name == n).Select(s => s.Site).Distinct(StringComparer.Ordinal))));
                context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.MergeSourcesApart,
                    AttributeArguments.AttributeLocation(merge, cancellationToken), scope,
                    string.Join(", ", distinctNames.Select(n => "'" + n + "'")), where));
            }

            // PEFT011: the method against the sources. Every method creates a LoRA adapter, which only a layer whose
            // method the rule table marks HoldsMergedLoRA (LoRA, DoRA) can hold.
            int method = AttributeArguments.Int(merge, "Method") ?? 0;
            string methodName = MergeParser.Methods[method < MergeParser.Methods.Length && method >= 0 ? method : 0].Name;
            bool core = AttributeArguments.Int(merge, "Space") == 1;
            if (names is not null)
            {
                Location methodLocation = AttributeArguments.ArgumentLocation(merge, "Method", cancellationToken);
                var sourcesOfMerge = distinctNames!.SelectMany(name => sources.Where(s => s.Name == name)).ToList();
                // The first source whose layer cannot hold it is named: one diagnostic per merge.
                int offending = sourcesOfMerge.FindIndex(s => AdapterConfigFields.Find(s.Method) is not { HoldsMergedLoRA: true });
                if (offending >= 0)
                {
                    Source source = sourcesOfMerge[offending];
                    context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.MergeNeedsLoRA, methodLocation,
                        scope, methodName, source.Name, source.Method, source.Site));
                }

                if (methodName == "ModelStock" && distinctNames!.Count < 2)
                {
                    context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.ModelStockNeedsTwo, methodLocation, scope, PeftClassView.Invariant(names.Count)));
                }

                // Core Space and LoRA-LEGO work on the factors B·A: plain LoRA sources only (a layer that holds no LoRA
                // adapter at all is reported above).
                int notPlainLoRA = sourcesOfMerge.FindIndex(s => s.Method != "LoRA");
                if ((core || methodName == "LoraLego") && offending < 0 && notPlainLoRA >= 0)
                {
                    Source source = sourcesOfMerge[notPlainLoRA];
                    context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.MergeNeedsLoRAFactors, methodLocation,
                        scope, core ? "Space = MergeSpace.Core" : "method LoraLego", source.Name, source.Method, source.Site));
                }

                // PEFT034: Iso-C / Iso-CTS over LoRA sources in full space.
                if (!core && MergeParser.FullRankInFullSpace.Contains(methodName) && sourcesOfMerge.Count > 0 && notPlainLoRA < 0)
                {
                    context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.FullRankMerge, methodLocation, scope, methodName));
                }
            }

            // PEFT032: the method against the space.
            if (core && MergeMessages.NotInCoreSpace(methodName) is { } why)
            {
                context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.MergeSpaceMismatch,
                    AttributeArguments.ArgumentLocation(merge, "Space", cancellationToken), scope, methodName, why));
            }

            // PEFT033: LoRA-LEGO's number of clusters.
            if (methodName == "LoraLego" && (rank ?? 0) == 0)
            {
                context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.MergeRankRequired,
                    AttributeArguments.ArgumentLocation(merge, "Method", cancellationToken), scope, methodName));
            }

            // PEFT008: the new adapter's name.
            string? newName = "merged";
            foreach (KeyValuePair<string, TypedConstant> argument in merge.NamedArguments)
            {
                if (argument.Key == KnownAttributes.NameArgument) newName = argument.Value.Value as string;
            }

            Location nameLocation = AttributeArguments.ArgumentLocation(merge, KnownAttributes.NameArgument, cancellationToken);
            if (string.IsNullOrEmpty(newName))
                context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.EmptyAdapterName, nameLocation, scope, "MergeWith"));
            else if (declared.Contains(newName!) || !created.Add(newName!))
                context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.MergeNameTaken, nameLocation, scope, newName));
        }

        // ---- the adapters a class-level merge can see ----------------------------------------------------------

        private static void Collect(
            PeftClassView view, Compilation compilation, List<Source> sources, ref bool opaque,
            HashSet<INamedTypeSymbol> visited, int depth, CancellationToken cancellationToken)
        {
            if (!visited.Add(view.Type.OriginalDefinition) || depth > MaxComponentDepth) return;
            foreach (var (member, uses) in view.Sites)
            {
                foreach (AdapterUse use in uses)
                {
                    if (use.Name is { } name) sources.Add(new Source(view.SiteOf(member), name, use.Method));
                }
            }

            var shapes = new ShapeReader(view.Type, compilation, cancellationToken);
            foreach (ISymbol member in PeftClassView.DeclaredMembers(view.Type))
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (member.IsStatic) continue;
                var types = new List<ITypeSymbol>();
                if (member is IFieldSymbol field) types.Add(field.Type);
                else if (member is IPropertySymbol property) types.Add(property.Type);
                foreach (var (_, constructed) in shapes.ConstructedLayers(member)) types.Add(constructed);

                foreach (ITypeSymbol memberType in types)
                {
                    foreach (INamedTypeSymbol candidate in PeftClassView.ClassTypesIn(memberType))
                    {
                        INamedTypeSymbol definition = candidate.OriginalDefinition;
                        if (IsTorchSharp(definition) || !TorchSymbols.IsModuleType(definition)) continue;
                        if (definition.DeclaringSyntaxReferences.IsEmpty)
                        {
                            opaque = true;
                            continue;
                        }

                        if (PeftClassView.Create(definition) is { } component)
                            Collect(component, compilation, sources, ref opaque, visited, depth + 1, cancellationToken);
                        else
                            visited.Add(definition);
                    }
                }
            }
        }

        private static bool IsTorchSharp(INamedTypeSymbol type)
        {
            INamespaceSymbol? ns = type.ContainingNamespace;
            while (ns is { ContainingNamespace.IsGlobalNamespace: false }) ns = ns.ContainingNamespace;
            return ns is { Name: "TorchSharp" };
        }
    }
}

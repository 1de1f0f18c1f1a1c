using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Diagnostics;
using Peft.Generators.Model;
using Peft.Generators.Parse;

namespace Peft.Generators.Diagnostics
{
    /// <summary>
    /// Checks that the generator can complete a class with PeftDsl attributes: it is partial, as are the types that
    /// contain it (PEFT001); it does not write a member the generator writes, RegisterComponents above all (PEFT014);
    /// and its constructors call RegisterComponents(), which wires the adapters (PEFT015, a warning).
    /// </summary>
    [DiagnosticAnalyzer(LanguageNames.CSharp)]
    public sealed class ClassShapeAnalyzer : DiagnosticAnalyzer
    {
        /// <inheritdoc/>
        public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics { get; } = ImmutableArray.Create(
            DiagnosticDescriptors.NotPartial,
            DiagnosticDescriptors.OwnGeneratedMember,
            DiagnosticDescriptors.RegisterComponentsNotCalled);

        /// <inheritdoc/>
        public override void Initialize(AnalysisContext context)
        {
            context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
            context.EnableConcurrentExecution();
            context.RegisterSymbolAction(AnalyzeType, SymbolKind.NamedType);
        }

        /// <summary>Declared only in PeftDsl's generated files (<c>Namespace.Class.Peft.g.cs</c>).</summary>
        private static bool IsGeneratedByPeft(ISymbol symbol) =>
            !symbol.Locations.IsEmpty && symbol.Locations.All(l => l.SourceTree?.FilePath.EndsWith(".Peft.g.cs", System.StringComparison.Ordinal) == true);

        private static void AnalyzeType(SymbolAnalysisContext context)
        {
            if (context.Symbol is not INamedTypeSymbol { TypeKind: TypeKind.Class, IsRecord: false, IsStatic: false } type) return;
            if (PeftClassView.Create(type) is not { HasGeneratorAttribute: true } view || !TorchSymbols.DerivesFromModule(type)) return;
            CancellationToken cancellationToken = context.CancellationToken;

            bool allPartial = true;
            for (INamedTypeSymbol? current = type; current is not null; current = current.ContainingType)
            {
                foreach (SyntaxReference reference in current.DeclaringSyntaxReferences)
                {
                    if (reference.GetSyntax(cancellationToken) is not TypeDeclarationSyntax declaration || declaration.Modifiers.Any(SyntaxKind.PartialKeyword)) continue;
                    allPartial = false;
                    context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.NotPartial, declaration.Identifier.GetLocation(),
                        current.ToDisplayString(ClassParser.UserFormat), view.FullName));
                }
            }

            bool ownsGenerated = false;
            foreach (GeneratedMember generated in GeneratedMember.All)
            {
                if (generated.PeftModelOnly && !view.HasPeftModel) continue;
                foreach (ISymbol declared in type.GetMembers(generated.Name))
                {
                    // The generator's own members, once it has run, are no conflict.
                    if (declared.IsImplicitlyDeclared || IsGeneratedByPeft(declared)) continue;
                    ownsGenerated = true;
                    string shown = declared is IMethodSymbol ? generated.Name + "()" : generated.Name;
                    context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.OwnGeneratedMember,
                        declared.Locations.FirstOrDefault() ?? Location.None, view.FullName, shown));
                }
            }

            if (!allPartial || ownsGenerated || type.IsAbstract) return;
            var scan = new ConstructorScan(context.Compilation, cancellationToken);
            var explicitConstructors = type.InstanceConstructors.Where(c => !c.IsImplicitlyDeclared).ToList();
            if (explicitConstructors.Count == 0)
            {
                if (!scan.BaseReaches(type))
                    context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.RegisterComponentsNotCalled, type.Locations.FirstOrDefault() ?? Location.None, view.FullName));
                return;
            }

            HashSet<IMethodSymbol> chainedTo = scan.ChainedConstructors(explicitConstructors);
            foreach (IMethodSymbol constructor in explicitConstructors)
            {
                if (chainedTo.Contains(constructor) || scan.Reaches(constructor, depth: 0)) continue;
                context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.RegisterComponentsNotCalled,
                    constructor.Locations.FirstOrDefault() ?? Location.None, view.FullName));
            }
        }
    }

    /// <summary>Whether constructors reach a call to <c>RegisterComponents()</c>, directly, through a helper or a chained constructor.</summary>
    internal sealed class ConstructorScan
    {
        private const int MaxDepth = 4;
        private readonly Compilation _compilation;
        private readonly CancellationToken _cancellationToken;
        private readonly Dictionary<SyntaxTree, SemanticModel> _models = new Dictionary<SyntaxTree, SemanticModel>();

        public ConstructorScan(Compilation compilation, CancellationToken cancellationToken)
        {
            _compilation = compilation;
            _cancellationToken = cancellationToken;
        }

        /// <summary>The constructors some other constructor of the list calls through <c>: this(...)</c> (helpers, not entry points).</summary>
        public HashSet<IMethodSymbol> ChainedConstructors(List<IMethodSymbol> constructors)
        {
            var chained = new HashSet<IMethodSymbol>(SymbolEqualityComparer.Default);
            foreach (IMethodSymbol constructor in constructors)
            {
                foreach (ConstructorDeclarationSyntax declaration in Declarations(constructor))
                {
                    if (declaration.Initializer is { } initializer && initializer.IsKind(SyntaxKind.ThisConstructorInitializer)
                        && Target(initializer) is { } target && !SymbolEqualityComparer.Default.Equals(target, constructor))
                        chained.Add(target);
                }
            }

            return chained;
        }

        /// <summary>Whether <paramref name="constructor"/> reaches a RegisterComponents() call.</summary>
        public bool Reaches(IMethodSymbol constructor, int depth)
        {
            if (depth > MaxDepth) return true; // too deep to tell: no warning
            bool any = false;
            foreach (ConstructorDeclarationSyntax declaration in Declarations(constructor))
            {
                any = true;
                SyntaxNode? body = (SyntaxNode?)declaration.Body ?? declaration.ExpressionBody;
                if (body is not null && Calls(body, constructor.ContainingType, depth)) return true;
                if (declaration.Initializer is { } initializer)
                {
                    if (Target(initializer) is { } target)
                    {
                        if (!SymbolEqualityComparer.Default.Equals(target, constructor) && InSource(target) && Reaches(target, depth + 1)) return true;
                        if (!InSource(target)) return false;
                    }
                    else
                    {
                        return true; // unresolved: no warning on code that does not compile yet
                    }
                }
                else if (BaseReaches(constructor.ContainingType, depth + 1))
                {
                    return true;
                }
            }

            return !any; // no source to read: no warning
        }

        /// <summary>Whether the base class's constructors (in source) call RegisterComponents().</summary>
        public bool BaseReaches(INamedTypeSymbol type, int depth = 0)
        {
            if (depth > MaxDepth) return true; // too deep to tell (or a cycle): no warning
            if (type.BaseType is not { } baseType || !InSource(baseType)) return false;
            foreach (IMethodSymbol constructor in baseType.InstanceConstructors)
            {
                if (constructor.IsImplicitlyDeclared ? BaseReaches(baseType, depth + 1) : Reaches(constructor, depth + 1)) return true;
            }

            return false;
        }

        private bool Calls(SyntaxNode body, INamedTypeSymbol type, int depth)
        {
            foreach (InvocationExpressionSyntax invocation in body.DescendantNodesAndSelf().OfType<InvocationExpressionSyntax>())
            {
                string? name = invocation.Expression switch
                {
                    IdentifierNameSyntax identifier => identifier.Identifier.ValueText,
                    MemberAccessExpressionSyntax { Expression: ThisExpressionSyntax or BaseExpressionSyntax, Name: IdentifierNameSyntax identifier } => identifier.Identifier.ValueText,
                    _ => null,
                };
                if (name is null) continue;
                if (name == "RegisterComponents") return true;
                if (depth >= MaxDepth) continue;

                // A helper of the class (Init(), Build()) that calls it counts.
                foreach (ISymbol member in type.GetMembers(name))
                {
                    if (member is not IMethodSymbol { MethodKind: MethodKind.Ordinary } method) continue;
                    foreach (SyntaxReference reference in method.DeclaringSyntaxReferences)
                    {
                        if (reference.GetSyntax(_cancellationToken) is MethodDeclarationSyntax declaration
                            && ((SyntaxNode?)declaration.Body ?? declaration.ExpressionBody) is { } helperBody
                            && Calls(helperBody, type, depth + 1))
                            return true;
                    }
                }
            }

            return false;
        }

        private IEnumerable<ConstructorDeclarationSyntax> Declarations(IMethodSymbol constructor)
        {
            foreach (SyntaxReference reference in constructor.DeclaringSyntaxReferences)
            {
                if (reference.GetSyntax(_cancellationToken) is ConstructorDeclarationSyntax declaration) yield return declaration;
            }
        }

        private IMethodSymbol? Target(ConstructorInitializerSyntax initializer) =>
            Model(initializer.SyntaxTree).GetSymbolInfo(initializer, _cancellationToken).Symbol as IMethodSymbol;

        private static bool InSource(ISymbol symbol) => !symbol.DeclaringSyntaxReferences.IsEmpty;

        private SemanticModel Model(SyntaxTree tree)
        {
            if (!_models.TryGetValue(tree, out SemanticModel? model))
            {
                model = _compilation.GetSemanticModel(tree);
                _models.Add(tree, model);
            }

            return model;
        }
    }
}

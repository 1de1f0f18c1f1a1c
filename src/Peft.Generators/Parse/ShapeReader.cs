using System.Collections.Generic;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Operations;

namespace Peft.Generators.Parse
{
    /// <summary>
    /// Finds the base layer's shape where the source makes it a constant: the member's initializer, or simple
    /// assignments in constructors (<c>q = Linear(512, 256)</c>, <c>this.q = nn.Linear(D, D)</c>), all agreeing.
    /// </summary>
    internal sealed class ShapeReader
    {
        private readonly INamedTypeSymbol _type;
        private readonly Compilation _compilation;
        private readonly CancellationToken _cancellationToken;
        private readonly Dictionary<SyntaxTree, SemanticModel> _models = new Dictionary<SyntaxTree, SemanticModel>();
        private List<AssignmentExpressionSyntax>? _constructorAssignments;

        public ShapeReader(INamedTypeSymbol type, Compilation compilation, CancellationToken cancellationToken)
        {
            _type = type;
            _compilation = compilation;
            _cancellationToken = cancellationToken;
        }

        /// <summary>The (in, out) features of the layer assigned to <paramref name="member"/>, or nulls.</summary>
        public (long? In, long? Out) Read(ISymbol member)
        {
            (long In, long Out)? shape = null;
            foreach (ExpressionSyntax value in AssignedValues(member))
            {
                (long In, long Out)? found = ReadLinear(value);
                if (found is null || (shape is not null && shape != found)) return (null, null);
                shape = found;
            }

            return shape is { } known ? (known.In, known.Out) : ((long?)null, (long?)null);
        }

        /// <summary>
        /// The static types of the layers the source visibly constructs for <paramref name="member"/>: each initializer
        /// or constructor assignment that is a call or a <c>new</c> (casts and parentheses looked through), with its
        /// syntax. Other values (variables, conditionals, <c>null</c>) are left out.
        /// </summary>
        public List<(ExpressionSyntax Value, ITypeSymbol Type)> ConstructedLayers(ISymbol member)
        {
            var found = new List<(ExpressionSyntax, ITypeSymbol)>();
            foreach (ExpressionSyntax value in AssignedValues(member))
            {
                ExpressionSyntax expression = Unwrap(value);
                if (expression is not (InvocationExpressionSyntax or BaseObjectCreationExpressionSyntax)) continue;
                if (ModelFor(expression.SyntaxTree).GetTypeInfo(expression, _cancellationToken).Type is { TypeKind: not TypeKind.Error } type)
                    found.Add((expression, type));
            }

            return found;
        }

        /// <summary>The expressions assigned to <paramref name="member"/>: its initializer and simple constructor assignments.</summary>
        private List<ExpressionSyntax> AssignedValues(ISymbol member)
        {
            var values = new List<ExpressionSyntax>();
            foreach (SyntaxReference reference in member.DeclaringSyntaxReferences)
            {
                SyntaxNode node = reference.GetSyntax(_cancellationToken);
                ExpressionSyntax? initializer = node switch
                {
                    VariableDeclaratorSyntax variable => variable.Initializer?.Value,
                    PropertyDeclarationSyntax property => property.Initializer?.Value,
                    _ => null,
                };
                if (initializer is not null) values.Add(initializer);
            }

            foreach (AssignmentExpressionSyntax assignment in ConstructorAssignments())
            {
                string? name = assignment.Left switch
                {
                    IdentifierNameSyntax identifier => identifier.Identifier.ValueText,
                    MemberAccessExpressionSyntax { Expression: ThisExpressionSyntax, Name: IdentifierNameSyntax identifier } => identifier.Identifier.ValueText,
                    _ => null,
                };
                if (name != member.Name) continue;
                ISymbol? assigned = ModelFor(assignment.SyntaxTree).GetSymbolInfo(assignment.Left, _cancellationToken).Symbol;
                if (SymbolEqualityComparer.Default.Equals(assigned, member)) values.Add(assignment.Right);
            }

            return values;
        }

        private static ExpressionSyntax Unwrap(ExpressionSyntax expression)
        {
            while (true)
            {
                if (expression is ParenthesizedExpressionSyntax parenthesized) expression = parenthesized.Expression;
                else if (expression is CastExpressionSyntax cast) expression = cast.Expression;
                else return expression;
            }
        }

        private List<AssignmentExpressionSyntax> ConstructorAssignments()
        {
            if (_constructorAssignments is not null) return _constructorAssignments;
            var found = new List<AssignmentExpressionSyntax>();
            foreach (IMethodSymbol constructor in _type.InstanceConstructors)
            {
                foreach (SyntaxReference reference in constructor.DeclaringSyntaxReferences)
                {
                    if (reference.GetSyntax(_cancellationToken) is not ConstructorDeclarationSyntax declaration) continue;
                    SyntaxNode? body = (SyntaxNode?)declaration.Body ?? declaration.ExpressionBody;
                    if (body is null) continue;
                    foreach (SyntaxNode node in body.DescendantNodesAndSelf(static n => n is not AnonymousFunctionExpressionSyntax and not LocalFunctionStatementSyntax))
                    {
                        if (node is AssignmentExpressionSyntax assignment && assignment.IsKind(SyntaxKind.SimpleAssignmentExpression))
                            found.Add(assignment);
                    }
                }
            }

            return _constructorAssignments = found;
        }

        private (long In, long Out)? ReadLinear(ExpressionSyntax expression)
        {
            expression = Unwrap(expression);
            if (expression is not InvocationExpressionSyntax invocation) return null;
            if (ModelFor(invocation.SyntaxTree).GetOperation(invocation, _cancellationToken) is not IInvocationOperation operation) return null;
            IMethodSymbol method = operation.TargetMethod;
            if (method.Name != "Linear" || !TorchSymbols.IsNn(method.ContainingType)) return null;

            long? inFeatures = null, outFeatures = null;
            foreach (IArgumentOperation argument in operation.Arguments)
            {
                if (argument.Parameter is not { } parameter || parameter.Type.SpecialType != SpecialType.System_Int64) continue;
                if (parameter.Ordinal == 0) inFeatures = Constant(argument.Value);
                else if (parameter.Ordinal == 1) outFeatures = Constant(argument.Value);
            }

            return inFeatures is { } i && outFeatures is { } o ? (i, o) : null;
        }

        private static long? Constant(IOperation value) =>
            value.ConstantValue is { HasValue: true, Value: var boxed } ? boxed switch
            {
                long l => l,
                int i => i,
                short s => s,
                byte b => b,
                sbyte sb => sb,
                ushort us => us,
                uint ui => ui,
                _ => null,
            } : null;

        private SemanticModel ModelFor(SyntaxTree tree)
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

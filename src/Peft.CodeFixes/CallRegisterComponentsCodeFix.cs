using System.Collections.Immutable;
using System.Composition;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeActions;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Formatting;
using Peft.Generators.Diagnostics;

namespace Peft.CodeFixes
{
    /// <summary>PEFT015: appends <c>RegisterComponents();</c> to the constructor (an expression body becomes a block).</summary>
    [ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(CallRegisterComponentsCodeFix)), Shared]
    public sealed class CallRegisterComponentsCodeFix : CodeFixProvider
    {
        /// <inheritdoc/>
        public override ImmutableArray<string> FixableDiagnosticIds { get; } = ImmutableArray.Create(DiagnosticIds.RegisterComponentsNotCalled);

        /// <inheritdoc/>
        public override FixAllProvider GetFixAllProvider() => WellKnownFixAllProviders.BatchFixer;

        /// <inheritdoc/>
        public override async Task RegisterCodeFixesAsync(CodeFixContext context)
        {
            SyntaxNode? root = await context.Document.GetSyntaxRootAsync(context.CancellationToken).ConfigureAwait(false);
            if (root is null) return;
            foreach (Diagnostic diagnostic in context.Diagnostics)
            {
                // Reported on the constructor's name; a class without a constructor gets no automatic fix.
                if (root.FindToken(diagnostic.Location.SourceSpan.Start).Parent is not ConstructorDeclarationSyntax constructor) continue;
                context.RegisterCodeFix(
                    CodeAction.Create(
                        "Call RegisterComponents() at the end of the constructor",
                        cancellationToken => AddCall(context.Document, constructor, cancellationToken),
                        equivalenceKey: nameof(CallRegisterComponentsCodeFix)),
                    diagnostic);
            }
        }

        private static async Task<Document> AddCall(Document document, ConstructorDeclarationSyntax constructor, CancellationToken cancellationToken)
        {
            SyntaxNode? root = await document.GetSyntaxRootAsync(cancellationToken).ConfigureAwait(false);
            if (root is null) return document;

            StatementSyntax call = SyntaxFactory.ExpressionStatement(SyntaxFactory.InvocationExpression(SyntaxFactory.IdentifierName("RegisterComponents")));
            ConstructorDeclarationSyntax updated;
            if (constructor.Body is { } body)
            {
                updated = constructor.WithBody(body.AddStatements(call));
            }
            else if (constructor.ExpressionBody is { } expressionBody)
            {
                BlockSyntax block = SyntaxFactory.Block(SyntaxFactory.ExpressionStatement(expressionBody.Expression), call);
                updated = constructor.WithExpressionBody(null).WithSemicolonToken(default).WithBody(block)
                    .WithTrailingTrivia(constructor.SemicolonToken.TrailingTrivia);
            }
            else
            {
                return document;
            }

            return document.WithSyntaxRoot(root.ReplaceNode(constructor, updated.WithAdditionalAnnotations(Formatter.Annotation)));
        }
    }
}

using System.Collections.Generic;
using System.Composition;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Formatting;
using Peft.Generators.Diagnostics;

namespace Peft.CodeFixes
{
    /// <summary>PEFT015: appends <c>RegisterComponents();</c> to the constructor (an expression body becomes a block).</summary>
    [ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(CallRegisterComponentsCodeFix)), Shared]
    public sealed class CallRegisterComponentsCodeFix : NodeReplacingCodeFix<ConstructorDeclarationSyntax>
    {
        /// <summary>The fix, registered for its diagnostic.</summary>
        public CallRegisterComponentsCodeFix() : base(DiagnosticIds.RegisterComponentsNotCalled) { }

        /// <inheritdoc/>
        /// <remarks>Reported on the constructor's name; a class without a constructor gets no automatic fix.</remarks>
        protected override ConstructorDeclarationSyntax? FindTarget(SyntaxNode root, Diagnostic diagnostic) =>
            root.FindToken(diagnostic.Location.SourceSpan.Start).Parent as ConstructorDeclarationSyntax;

        /// <inheritdoc/>
        protected override IEnumerable<Replacement> Replacements(ConstructorDeclarationSyntax target, Diagnostic diagnostic)
        {
            yield return new Replacement("Call RegisterComponents() at the end of the constructor", nameof(CallRegisterComponentsCodeFix), (constructor, _) => AddCall(constructor));
        }

        private static ConstructorDeclarationSyntax? AddCall(ConstructorDeclarationSyntax constructor)
        {
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
                return null;
            }

            return updated.WithAdditionalAnnotations(Formatter.Annotation);
        }
    }
}

using System.Collections.Immutable;
using System.Composition;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeActions;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Peft.Generators.Diagnostics;

namespace Peft.CodeFixes
{
    /// <summary>
    /// PEFT017: gives the reported member's adapter its own name, the member's (<c>Name = "mlp"</c>), replacing a
    /// Name it already has. A class-level attribute reaching the member through Targets has no automatic fix: renaming
    /// it would rename the adapter on every field it targets.
    /// </summary>
    [ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(NameAdapterCodeFix)), Shared]
    public sealed class NameAdapterCodeFix : CodeFixProvider
    {
        private const string NameArgument = "Name";

        /// <inheritdoc/>
        public override ImmutableArray<string> FixableDiagnosticIds { get; } = ImmutableArray.Create(DiagnosticIds.SharedConfigMismatch);

        /// <inheritdoc/>
        public override FixAllProvider GetFixAllProvider() => WellKnownFixAllProviders.BatchFixer;

        /// <inheritdoc/>
        public override async Task RegisterCodeFixesAsync(CodeFixContext context)
        {
            SyntaxNode? root = await context.Document.GetSyntaxRootAsync(context.CancellationToken).ConfigureAwait(false);
            if (root is null) return;
            foreach (Diagnostic diagnostic in context.Diagnostics)
            {
                if (!diagnostic.Properties.TryGetValue(DiagnosticIds.MemberNameProperty, out string? member) || string.IsNullOrEmpty(member)) continue;
                AttributeSyntax? attribute = root.FindNode(diagnostic.Location.SourceSpan, getInnermostNodeForTie: true)
                    .AncestorsAndSelf().OfType<AttributeSyntax>().FirstOrDefault();
                if (attribute?.Parent?.Parent is not (FieldDeclarationSyntax or PropertyDeclarationSyntax)) continue;
                string name = member!;
                context.RegisterCodeFix(
                    CodeAction.Create($"Name the adapter \"{name}\"", cancellationToken => Rename(context.Document, attribute, name, cancellationToken),
                        equivalenceKey: nameof(NameAdapterCodeFix)),
                    diagnostic);
            }
        }

        private static async Task<Document> Rename(Document document, AttributeSyntax attribute, string name, CancellationToken cancellationToken)
        {
            SyntaxNode? root = await document.GetSyntaxRootAsync(cancellationToken).ConfigureAwait(false);
            if (root is null) return document;

            LiteralExpressionSyntax literal = SyntaxFactory.LiteralExpression(SyntaxKind.StringLiteralExpression, SyntaxFactory.Literal(name));
            AttributeArgumentSyntax? existing = attribute.ArgumentList?.Arguments
                .FirstOrDefault(a => a.NameEquals?.Name.Identifier.ValueText == NameArgument);
            AttributeSyntax updated;
            if (existing is not null)
            {
                updated = attribute.ReplaceNode(existing.Expression, literal.WithTriviaFrom(existing.Expression));
            }
            else
            {
                AttributeArgumentSyntax argument = SyntaxFactory.AttributeArgument(
                    SyntaxFactory.NameEquals(
                        SyntaxFactory.IdentifierName(NameArgument).WithTrailingTrivia(SyntaxFactory.Space),
                        SyntaxFactory.Token(SyntaxKind.EqualsToken).WithTrailingTrivia(SyntaxFactory.Space)),
                    null, literal);
                AttributeArgumentListSyntax list = attribute.ArgumentList ?? SyntaxFactory.AttributeArgumentList();
                SeparatedSyntaxList<AttributeArgumentSyntax> arguments = list.Arguments;
                arguments = arguments.Count == 0
                    ? arguments.Add(argument)
                    : SyntaxFactory.SeparatedList(arguments.Append(argument),
                        arguments.GetSeparators().Append(SyntaxFactory.Token(SyntaxKind.CommaToken).WithTrailingTrivia(SyntaxFactory.Space)));
                updated = attribute.WithArgumentList(list.WithArguments(arguments));
            }

            return document.WithSyntaxRoot(root.ReplaceNode(attribute, updated));
        }
    }
}

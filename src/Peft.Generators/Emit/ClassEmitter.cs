using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Text;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Text;
using Peft.Generators.Model;
using Peft.Generators.Parse;

namespace Peft.Generators.Emit
{
    /// <summary>Writes <c>Namespace.Class.Peft.g.cs</c> from a <see cref="ClassModel"/>.</summary>
    internal static class ClassEmitter
    {
        private const string Runtime = "global::Peft.Runtime";
        private const string ReadOnlyList = "global::System.Collections.Generic.IReadOnlyList";

        public static void AddSource(SourceProductionContext context, ClassModel model)
        {
            try
            {
                context.AddSource(model.HintName, SourceText.From(Emit(model), Encoding.UTF8));
            }
            catch (ArgumentException)
            {
                // The same class reached the output twice (it cannot with well-formed input): the first file stands.
            }
        }

        public static string Emit(ClassModel model)
        {
            var w = new CodeWriter();
            GeneratedCode.WriteFileHeader(w);
            if (model.Namespace is not null) w.Open("namespace " + model.Namespace);
            foreach (TypeDeclarationModel container in model.ContainingTypes)
                w.Open("partial " + container.Keyword + " " + container.Name);

            string interfaces = Runtime + ".IPeftComponent" + (model.IsPeftModel ? ", " + Runtime + ".IPeftModel" : string.Empty);
            w.Open("partial " + model.Type.Keyword + " " + model.Type.Name + " : " + interfaces);
            WriteFields(w, model);
            WriteRegisterComponents(w, model);
            w.Line();
            WriteComponent(w, model);
            w.Line();
            WritePeftInfo(w, model);
            if (model.IsPeftModel)
            {
                w.Line();
                WriteModelApi(w, model);
            }
            else if (!model.Merges.IsEmpty)
            {
                w.Line();
                WriteMerges(w, model);
            }

            w.Close();
            foreach (TypeDeclarationModel _ in model.ContainingTypes) w.Close();
            if (model.Namespace is not null) w.Close();
            return w.ToString();
        }

        private static string New(ClassModel model, string name) => model.HiddenNames.Contains(name) ? "new " : string.Empty;

        private static void WriteFields(CodeWriter w, ClassModel model)
        {
            bool any = false;
            if (!model.Sites.IsEmpty)
            {
                GeneratedCode.WriteFieldAttributes(w);
                w.Line("private " + New(model, "__peftWired") + "bool __peftWired;");
                any = true;
            }

            if (model.IsPeftModel)
            {
                GeneratedCode.WriteFieldAttributes(w);
                w.Line("private " + New(model, "__peftCore") + Runtime + ".PeftModelCore? __peftCore;");
                any = true;
            }

            if (any) w.Line();
        }

        private static void WriteRegisterComponents(CodeWriter w, ClassModel model)
        {
            w.Line(model.IsPeftModel
                ? "/// <summary>Wires the PeftDsl adapters, registers the components, then freezes everything but adapters and [Trainable] modules.</summary>"
                : "/// <summary>Wires the PeftDsl adapters, then registers the components.</summary>");
            GeneratedCode.WriteMemberAttributes(w);
            w.Open("protected override void RegisterComponents()");
            if (!model.Sites.IsEmpty)
            {
                w.Open("if (!__peftWired)");
                w.Line("__peftWired = true;");
                foreach (AdapterSiteModel site in model.Sites)
                {
                    KnownAttribute known = KnownAttributes.All.First(k => k.Kind == AttributeKind.Adapter && k.Method == site.Method);
                    string options = site.Options.IsEmpty
                        ? "new " + known.OptionsType + "()"
                        : "new " + known.OptionsType + " { " + string.Join(", ", site.Options.Select(static o => o.Property + " = " + o.Value)) + " }";
                    w.Line("this." + site.MemberName + " = " + known.FactoryType + ".Wrap(this." + site.MemberName + (site.NullableMember ? "!" : string.Empty)
                        + ", " + Literal(site.Path) + ", " + Literal(site.AdapterName) + ", " + options + ");");
                }

                w.Close();
            }

            w.Line("base.RegisterComponents();");
            if (model.IsPeftModel) w.Line("__peftCore ??= " + Runtime + ".PeftModelCore.Attach(this, PeftInfo);");
            w.Close();
        }

        private static void WriteComponent(CodeWriter w, ClassModel model)
        {
            GeneratedCode.WriteMemberAttributes(w);
            w.Line(ReadOnlyList + "<string> " + Runtime + ".IPeftComponent.TrainableMembers => __peftTrainableMembers;");
            w.Line();
            GeneratedCode.WriteFieldAttributes(w);
            w.Line("private static " + New(model, "__peftTrainableMembers") + "readonly string[] __peftTrainableMembers = " + (model.TrainableMembers.IsEmpty
                ? "global::System.Array.Empty<string>();"
                : "new string[] { " + string.Join(", ", model.TrainableMembers.Select(Literal)) + " };"));
            w.Line();
            GeneratedCode.WriteMemberAttributes(w);
            w.Open("void " + Runtime + ".IPeftComponent.UnloadAdapterLayers()");
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (AdapterSiteModel site in model.Sites)
            {
                if (!seen.Add(site.MemberName)) continue;
                string local = "__" + site.MemberName.TrimStart('@');
                w.Line("if (this." + site.MemberName + " is " + Runtime + ".IAdapterLayer " + local + ") { this." + site.MemberName + " = " + local
                    + ".BaseLayer; " + Runtime + ".PeftModelCore.ReplaceSubmodule(this, " + Literal(site.ComponentName) + ", this." + site.MemberName + "); }");
            }

            w.Close();
        }

        private static void WritePeftInfo(CodeWriter w, ClassModel model)
        {
            w.Line("/// <summary>What the compiler saw of this class's adapters.</summary>");
            GeneratedCode.WriteMemberAttributes(w);
            w.Line("public static " + New(model, "PeftInfo") + Runtime + ".PeftModelInfo PeftInfo { get; } = new " + Runtime + ".PeftModelInfo(");
            w.Line("    " + Literal(model.FullName) + ",");
            if (model.Sites.IsEmpty)
            {
                w.Line("    global::System.Array.Empty<" + Runtime + ".AdapterSiteInfo>(),");
            }
            else
            {
                w.Line("    new " + Runtime + ".AdapterSiteInfo[]");
                w.Line("    {");
                foreach (AdapterSiteModel site in model.Sites)
                {
                    w.Line("        new " + Runtime + ".AdapterSiteInfo(" + Literal(site.ComponentName) + ", " + Literal(site.Method) + ", " + Literal(site.AdapterName)
                        + ", " + Literal(site.OptionsText) + ", " + Long(site.InFeatures) + ", " + Long(site.OutFeatures) + "),");
                }

                w.Line("    },");
            }

            w.Line("    __peftTrainableMembers,");
            if (model.Components.IsEmpty)
            {
                w.Line("    global::System.Array.Empty<" + Runtime + ".PeftModelInfo>())" + InfoInitializer(model) + ";");
            }
            else
            {
                w.Line("    new " + Runtime + ".PeftModelInfo[]");
                w.Line("    {");
                foreach (string component in model.Components) w.Line("        " + component + ",");
                w.Line("    })" + InfoInitializer(model) + ";");
            }
        }

        private static string InfoInitializer(ClassModel model)
        {
            var parts = new List<string>();
            if (model.BaseModelName is not null) parts.Add("BaseModelName = " + Literal(model.BaseModelName));
            if (model.TaskType is not null) parts.Add("TaskType = " + Literal(model.TaskType));
            return parts.Count == 0 ? string.Empty : " { " + string.Join(", ", parts) + " }";
        }

        private static void WriteModelApi(CodeWriter w, ClassModel model)
        {
            foreach (GeneratedMember member in GeneratedMember.ModelApi)
            {
                w.Line("/// <summary>" + member.Summary + "</summary>");
                foreach (ApiParameter parameter in member.ApiParameters ?? ImmutableArray<ApiParameter>.Empty)
                    w.Line("/// <param name=\"" + parameter.Name + "\">" + parameter.Summary + "</param>");
                GeneratedCode.WriteMemberAttributes(w);
                w.Line("public " + New(model, member.Name) + member.Declaration);
                w.Line();
            }

            const string core = GeneratedMember.Core;
            if (!model.Merges.IsEmpty) WriteMerges(w, model, trailingBlankLine: true);

            GeneratedCode.WriteMemberAttributes(w);
            w.Line("private " + New(model, core) + Runtime + ".PeftModelCore " + core + " => __peftCore ?? throw new global::System.InvalidOperationException("
                + Literal(model.FullName + ": RegisterComponents() has not run, so no adapter is wired") + ");");
        }

        /// <summary>
        /// One <c>Merge{Name}()</c> per <c>[MergeWith]</c>: on a <c>[PeftModel]</c> root through its model core (every
        /// layer of the model, or the one member); elsewhere through the runtime on the class's own members.
        /// </summary>
        private static void WriteMerges(CodeWriter w, ClassModel model, bool trailingBlankLine = false)
        {
            for (int i = 0; i < model.Merges.Count; i++)
            {
                MergeModel merge = model.Merges[i];
                var initializers = new List<string> { "Method = global::Peft.MergeMethod." + merge.Method };
                if (merge.Weights is not null) initializers.Add("Weights = " + merge.Weights);
                if (merge.Density is not null) initializers.Add("Density = " + merge.Density);
                if (merge.Rank != 0) initializers.Add("Rank = " + merge.Rank.ToString(System.Globalization.CultureInfo.InvariantCulture));
                if (merge.Seed != 0) initializers.Add("Seed = " + ConstantFormatter.FormatPrimitive(merge.Seed));
                if (merge.Space != "Full") initializers.Add("Space = global::Peft.MergeSpace." + merge.Space);
                if (merge.CommonFraction is not null) initializers.Add("CommonFraction = " + merge.CommonFraction);
                string spec = "new " + Runtime + ".Merging.MergeSpec(" + Literal(merge.Name) + ", new string[] { " + string.Join(", ", merge.Adapters.Select(Literal))
                    + " }) { " + string.Join(", ", initializers) + " }";
                string call;
                if (model.IsPeftModel)
                    call = "__peftCoreOrThrow.MergeAdapter(" + spec + (merge.Member is null ? string.Empty : ", " + Literal(merge.Member)) + ")";
                else
                    call = Runtime + ".Merging.AdapterMerger.AddMergedAdapter(this, " + spec + ", " + string.Join(", ", merge.Members.Select(Literal)) + ")";

                w.Line("/// <summary>" + merge.Summary + "</summary>");
                GeneratedCode.WriteMemberAttributes(w);
                w.Line("public " + New(model, merge.MethodName) + "void " + merge.MethodName + "() => " + call + ";");
                if (trailingBlankLine || i + 1 < model.Merges.Count) w.Line();
            }
        }

        private static string Literal(string value) => SymbolDisplay.FormatLiteral(value, quote: true);

        private static string Long(long? value) => value is { } v ? ConstantFormatter.FormatPrimitive(v)! : "null";
    }
}

using System;
using System.Linq;
using System.Reflection;
using Peft.Generators.Model;
using Xunit;

namespace Peft.Generators.Tests
{
    /// <summary>The generator's one list of the model-level API (<see cref="GeneratedMember.ModelApi"/>) is the runtime's <c>IPeftModel</c>.</summary>
    public class GeneratedApiTests
    {
        [Fact]
        public void The_generated_model_api_is_exactly_IPeftModel()
        {
            var runtime = typeof(Peft.Runtime.IPeftModel).GetMembers(BindingFlags.Public | BindingFlags.Instance)
                .Where(m => m is PropertyInfo || (m is MethodInfo method && !method.IsSpecialName))
                .Select(Describe)
                .OrderBy(d => d, StringComparer.Ordinal);
            var generated = GeneratedMember.All
                .Where(m => m.PeftModelOnly && m.Accessibility == Microsoft.CodeAnalysis.Accessibility.Public)
                .Select(m => m.Name + (m.ApiParameters is { } parameters
                    ? "(" + string.Join(", ", parameters.Select(p => (p.IsParams ? "params " : "") + p.Type + (p.DefaultValue is null ? "" : " = " + p.DefaultValue))) + ")"
                    : string.Empty))
                .OrderBy(d => d, StringComparer.Ordinal);
            Assert.Equal(runtime, generated);
            Assert.Equal(GeneratedMember.ModelApi, GeneratedMember.All.Where(m => m.PeftModelOnly && m.Accessibility == Microsoft.CodeAnalysis.Accessibility.Public));
        }

        /// <summary><c>SaveAdapter(string, string)</c>, <c>SetActiveAdapters(params string[])</c>, <c>TrainableParameterCount</c>.</summary>
        private static string Describe(MemberInfo member) => member switch
        {
            MethodInfo method => method.Name + "(" + string.Join(", ", method.GetParameters().Select(p =>
                (p.IsDefined(typeof(ParamArrayAttribute)) ? "params " : "") + TypeName(p.ParameterType)
                + (!p.ParameterType.IsValueType && Nullability.Create(p).WriteState == NullabilityState.Nullable ? "?" : "")
                + (p.HasDefaultValue ? " = " + (p.DefaultValue is null ? "null" : p.DefaultValue.ToString()) : ""))) + ")",
            _ => member.Name,
        };

        private static readonly NullabilityInfoContext Nullability = new();

        private static string TypeName(Type type) =>
            type == typeof(string) ? "string"
            : type == typeof(int) ? "int" // keywords, as SymbolDisplayFormat.FullyQualifiedFormat shows them
            : type.IsArray ? TypeName(type.GetElementType()!) + "[]"
            : type.IsGenericType
                ? "global::" + type.GetGenericTypeDefinition().FullName![..type.GetGenericTypeDefinition().FullName!.IndexOf('`')].Replace('+', '.')
                    + "<" + string.Join(", ", type.GetGenericArguments().Select(TypeName)) + ">"
            : "global::" + type.FullName!.Replace('+', '.');
    }
}

using System.Text;

namespace Peft.Generators.Tests.Analyzers
{
    /// <summary>
    /// Adapter attributes being added to Peft.Dsl in parallel (same shape as the real ones), put into analyzer test
    /// compilations only while the real assembly lacks them. The analyzers match them by metadata name.
    /// </summary>
    internal static class DslStubs
    {
        private static readonly (string MetadataName, string Source)[] Stubs =
        {
            ("Peft.DoRAAttribute", """
                namespace Peft
                {
                    [System.AttributeUsage(System.AttributeTargets.Field | System.AttributeTargets.Property | System.AttributeTargets.Class, AllowMultiple = true)]
                    public sealed class DoRAAttribute : System.Attribute
                    {
                        public DoRAAttribute(int rank) => Rank = rank;
                        public int Rank { get; }
                        public double Alpha { get; set; } = 8;
                        public double Dropout { get; set; }
                        public bool UseRsLora { get; set; }
                        public string Name { get; set; } = "default";
                        public string[]? Targets { get; set; }
                    }
                }
                """),
            ("Peft.VeRAAttribute", """
                namespace Peft
                {
                    [System.AttributeUsage(System.AttributeTargets.Field | System.AttributeTargets.Property | System.AttributeTargets.Class, AllowMultiple = true)]
                    public sealed class VeRAAttribute : System.Attribute
                    {
                        public VeRAAttribute(int rank) => Rank = rank;
                        public int Rank { get; }
                        public double Dropout { get; set; }
                        public int ProjectionSeed { get; set; }
                        public string Name { get; set; } = "default";
                        public string[]? Targets { get; set; }
                    }
                }
                """),
            ("Peft.LoHaAttribute", """
                namespace Peft
                {
                    [System.AttributeUsage(System.AttributeTargets.Field | System.AttributeTargets.Property | System.AttributeTargets.Class, AllowMultiple = true)]
                    public sealed class LoHaAttribute : System.Attribute
                    {
                        public LoHaAttribute(int rank) => Rank = rank;
                        public int Rank { get; }
                        public double Alpha { get; set; } = 8;
                        public double RankDropout { get; set; }
                        public double ModuleDropout { get; set; }
                        public string Name { get; set; } = "default";
                        public string[]? Targets { get; set; }
                    }
                }
                """),
            ("Peft.LoKrAttribute", """
                namespace Peft
                {
                    [System.AttributeUsage(System.AttributeTargets.Field | System.AttributeTargets.Property | System.AttributeTargets.Class, AllowMultiple = true)]
                    public sealed class LoKrAttribute : System.Attribute
                    {
                        public LoKrAttribute(int rank) => Rank = rank;
                        public int Rank { get; }
                        public double Alpha { get; set; } = 8;
                        public int DecomposeFactor { get; set; } = -1;
                        public double RankDropout { get; set; }
                        public double ModuleDropout { get; set; }
                        public string Name { get; set; } = "default";
                        public string[]? Targets { get; set; }
                    }
                }
                """),
            ("Peft.IA3Attribute", """
                namespace Peft
                {
                    [System.AttributeUsage(System.AttributeTargets.Field | System.AttributeTargets.Property | System.AttributeTargets.Class, AllowMultiple = true)]
                    public sealed class IA3Attribute : System.Attribute
                    {
                        public bool FeedForward { get; set; }
                        public string Name { get; set; } = "default";
                        public string[]? Targets { get; set; }
                    }
                }
                """),
        };

        /// <summary>The stubs the real Peft.Dsl does not define yet; empty once it has them all.</summary>
        public static string Source()
        {
            var text = new StringBuilder();
            foreach (var (metadataName, source) in Stubs)
            {
                if (typeof(Peft.LoRAAttribute).Assembly.GetType(metadataName) is null) text.Append(source).Append('\n');
            }

            return text.ToString();
        }
    }
}

/// The C#-facing entry points of the recipe (SPEC §4): static methods taking records, an
/// observer and a CancellationToken (cancellation checkpoints and stops gracefully).
namespace ResearchFramework.Algorithm

open System.Threading

/// The built-in trainer's C# entry points (SPEC §4): one call runs a whole base or two-phase run.
[<AbstractClass; Sealed>]
type Trainer =
    /// The two-phase run: Phase I = A for τ steps, the certified switch, Phase II up to T.
    static member Run(architecture: ArchitectureSpec, training: TrainingConfig, recipe: RecipeConfig,
                      data: TrainingData, observer: IRecipeObserver, cancellationToken: CancellationToken) : RunResult =
        let r = if obj.ReferenceEquals(recipe, null) then None else Some recipe
        use trainer = new TwoPhaseTrainer(architecture, training, r, data, observer)
        trainer.Run cancellationToken

    /// The base run: A for T iterations with the same seed, batches and schedule.
    static member RunBase(architecture: ArchitectureSpec, training: TrainingConfig, data: TrainingData,
                          observer: IRecipeObserver, cancellationToken: CancellationToken) : RunResult =
        use trainer = new TwoPhaseTrainer(architecture, training, None, data, observer)
        trainer.Run cancellationToken

    /// Resumes a run from a checkpoint written by `Run`/`RunBase` (recipe = null for a base run)
    /// and runs it to T; on CPU the result is bit-identical to the uninterrupted run.
    static member Resume(checkpointPath: string, architecture: ArchitectureSpec, training: TrainingConfig,
                         recipe: RecipeConfig, data: TrainingData, observer: IRecipeObserver,
                         cancellationToken: CancellationToken) : RunResult =
        let r = if obj.ReferenceEquals(recipe, null) then None else Some recipe
        use trainer = new TwoPhaseTrainer(architecture, training, r, data, observer)
        trainer.LoadCheckpoint checkpointPath
        trainer.Run cancellationToken

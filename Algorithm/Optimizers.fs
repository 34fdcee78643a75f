/// Base first-order algorithms A of SPEC §4 (SGD, SGD + momentum / Nesterov, Adam, AdamW) with
/// weight decay and a learning-rate schedule, as values built on TorchSharp's optimisers.
namespace ResearchFramework.Algorithm

open System
open TorchSharp

/// Shape of the learning-rate schedule after the optional warm-up.
type ScheduleKind =
    /// η_t = η.
    | Constant = 0
    /// η_t = η · γ^⌊t / StepSize⌋.
    | Step = 1
    /// η_t = η_min + ½(η − η_min)(1 + cos(π t / T)).
    | Cosine = 2

/// Learning-rate schedule: linear warm-up η·(t+1)/W for t < W, then `Kind` on the remaining
/// T − W iterations (t counted from the end of the warm-up).
type Schedule =
    { Kind: ScheduleKind
      BaseLearningRate: float
      StepSize: int
      Gamma: float
      MinLearningRate: float
      WarmupIterations: int }

    static member Constant(lr: float) =
        { Kind = ScheduleKind.Constant; BaseLearningRate = lr; StepSize = 1; Gamma = 1.0; MinLearningRate = 0.0; WarmupIterations = 0 }

/// The base algorithm's update rule.
type OptimizerKind =
    | Sgd = 0
    | Momentum = 1
    | Nesterov = 2
    | Adam = 3
    | AdamW = 4

/// The base algorithm A without its schedule: rule and its hyper-parameters.
type OptimizerSpec =
    { Kind: OptimizerKind
      Momentum: float
      Beta1: float
      Beta2: float
      Epsilon: float
      WeightDecay: float }

    static member Sgd = { Kind = OptimizerKind.Sgd; Momentum = 0.0; Beta1 = 0.9; Beta2 = 0.999; Epsilon = 1e-8; WeightDecay = 0.0 }
    static member SgdMomentum(m: float, nesterov: bool) =
        { OptimizerSpec.Sgd with Kind = (if nesterov then OptimizerKind.Nesterov else OptimizerKind.Momentum); Momentum = m }
    static member Adam = { OptimizerSpec.Sgd with Kind = OptimizerKind.Adam }
    static member AdamW(weightDecay: float) = { OptimizerSpec.Sgd with Kind = OptimizerKind.AdamW; WeightDecay = weightDecay }

module Optimizers =

    /// True for the rules whose step is a (heavy-ball) gradient step, −η∇ plus momentum: SGD,
    /// momentum, Nesterov. Adam/AdamW rescale coordinates, so a bound on η does not bound their steps.
    let takesGradientSteps (spec: OptimizerSpec) =
        match spec.Kind with
        | OptimizerKind.Sgd | OptimizerKind.Momentum | OptimizerKind.Nesterov -> true
        | _ -> false

    /// η_t of a schedule at iteration t of a run of `total` iterations (see `Schedule`).
    let learningRate (s: Schedule) (total: int) (t: int) : float =
        let w = max 0 s.WarmupIterations
        if t < w then s.BaseLearningRate * float (t + 1) / float w
        else
            let u = t - w
            let span = max 1 (total - w)
            match s.Kind with
            | ScheduleKind.Constant -> s.BaseLearningRate
            | ScheduleKind.Step -> s.BaseLearningRate * Math.Pow(s.Gamma, float (u / max 1 s.StepSize))
            | ScheduleKind.Cosine ->
                s.MinLearningRate + 0.5 * (s.BaseLearningRate - s.MinLearningRate) * (1.0 + cos (Math.PI * float (min u span) / float span))
            | other -> invalidArg "s" (sprintf "unknown schedule %O" other)

    /// The TorchSharp optimiser implementing A over `parameters` (the rate is set per step by `setLearningRate`).
    let create (spec: OptimizerSpec) (lr: float) (parameters: Modules.Parameter seq) : torch.optim.Optimizer =
        let ps = Seq.toArray parameters
        match spec.Kind with
        | OptimizerKind.Sgd -> torch.optim.SGD(ps, lr, 0.0, 0.0, spec.WeightDecay, false, false) :> torch.optim.Optimizer
        | OptimizerKind.Momentum -> torch.optim.SGD(ps, lr, spec.Momentum, 0.0, spec.WeightDecay, false, false)
        | OptimizerKind.Nesterov -> torch.optim.SGD(ps, lr, spec.Momentum, 0.0, spec.WeightDecay, true, false)
        | OptimizerKind.Adam -> torch.optim.Adam(ps, lr, spec.Beta1, spec.Beta2, spec.Epsilon, spec.WeightDecay, false, false)
        | OptimizerKind.AdamW -> torch.optim.AdamW(ps, lr, spec.Beta1, spec.Beta2, spec.Epsilon, spec.WeightDecay, false, false)
        | other -> invalidArg "spec" (sprintf "unknown optimizer %O" other)

    /// Sets η on every parameter group (how the schedule is applied, once per step).
    let setLearningRate (opt: torch.optim.Optimizer) (lr: float) =
        for g in opt.ParamGroups do
            g.LearningRate <- lr

    /// Writes the optimiser's state (momentum / Adam moments, step counts) with TorchSharp's own format.
    let saveState (opt: torch.optim.Optimizer) (w: IO.BinaryWriter) =
        match opt with
        | :? Modules.OptimizerHelper as h -> h.save_state_dict w
        | _ -> invalidOp (sprintf "optimizer %s cannot save its state" (opt.GetType().Name))

    /// Reads state written by `saveState` into an optimiser built over the same parameters.
    let loadState (opt: torch.optim.Optimizer) (r: IO.BinaryReader) =
        match opt with
        | :? Modules.OptimizerHelper as h -> h.load_state_dict r
        | _ -> invalidOp (sprintf "optimizer %s cannot load state" (opt.GetType().Name))

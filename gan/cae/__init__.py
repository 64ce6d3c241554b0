"""The conditional autoencoder that trains the counterfactual generator on a CPU.

An encoder gives a film's nuisance code ``n`` (pose, exposure, acquisition,
findings); the frozen embedder gives its identity ``c``; the StyleGAN2
generator of :mod:`gan.networks` renders ``G(n, c)`` (``n`` takes the place of
the latent ``z``). Trained with supervised losses (reconstruction,
same-patient cross-reconstruction, an identity cycle through the frozen
embedder, a KL prior on ``n``) plus a ramped adversarial term; see
:mod:`gan.cae.engine`. Counterfactuals of a real film: encode once, move ``c``,
decode (:mod:`gan.counterfactual`).
"""

"""The one engine: optimize a batch of images, each against its own sum of energy terms.

    settings.py    Settings (schedule, transform and regularizer weights; torch-free, read by the catalog)
    terms.py       energies as small objects, one value per sample (class score, feature match, L2, TV, ...)
    patch_prior.py the data-driven patch prior of Sec. 3.2 as a term
    transforms.py  what the network sees each step (jitter, random scale, ...) and each one's Settings knob
    params.py      how the image is parameterized (clamped pixels, ...)
    solve.py       Problem (terms, gates by level), Solution (numbers its terms report), solve: the one loop
    recipes.py     the standard terms, transforms and parameterization for a Settings

The engine knows no method: methods compose terms into Problems (their recipes live with them).
Import from the submodules; this package imports nothing, so `generator.engine.settings` stays
free of torch.
"""

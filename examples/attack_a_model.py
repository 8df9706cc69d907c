"""Train a small extended-distillation model and attack it with every attack, plain and adaptive.

    python examples/attack_a_model.py                      # trains on the bundled sample (~1 min)
    python examples/attack_a_model.py saved_models/RUN/distilled.keras   # or attacks a saved one

Everything after this docstring is the snippet of docs/attacks.md, verbatim.
Quick settings (few digits, few epochs, short attacks): the numbers are illustrative.
"""
import sys

import keras
import numpy as np

from keras_edd import attacks, data, models
from keras_edd.config import DataConfig
from keras_edd.defense import labeling, training
from keras_edd.evaluation import metrics

keras.utils.set_random_seed(0)  # the same weights, hence the same numbers, on every run

# The real-MNIST sample inside the package (works offline): 1,000 training, 20 attacked digits.
ds = data.load_data(DataConfig(dataset="mnist_sample", train_limit=1000, test_limit=20))
x_train, y_train = data.to_float(ds.x_train), ds.y_train
x, y = data.to_float(ds.x_test), ds.y_test
n = ds.num_classes  # the outlier class ("detected") is index n of the n + 1 logits

if len(sys.argv) > 1:  # a saved model with n + 1 logits, e.g. bin/train's distilled.keras
    f_d = models.load_model(sys.argv[1])
else:  # teacher f at T = 1 -> sigma(x) from N dropout passes -> labels k(x) -> f^d at T = 4
    f = models.cleverhans_cnn(n)
    training.fit(f, x_train, training.one_hot(y_train, n), epochs=3, batch_size=64,
                 progress=False, log_epochs=False)
    sigma = labeling.mc_uncertainty(f, x_train, passes=5)
    k = labeling.outlier_labels(y_train, sigma, sigma.max(), alpha=0.9, num_classes=n)
    f_d = models.cleverhans_cnn(n + 1)
    training.fit(f_d, x_train, k, epochs=4, batch_size=64, temperature=4.0,
                 penalty_weight=1e-3, progress=False, log_epochs=False)

attack_fns = {
    "fgsm": lambda oc: attacks.fgsm(f_d, x, eps=0.2, outlier_class=oc),
    "pgd": lambda oc: attacks.pgd(f_d, x, eps=0.2, eps_iter=0.05, nb_iter=10, outlier_class=oc),
    # JSMA aims at a random real class, never at the outlier class: one run serves both.
    "jsma": lambda oc: attacks.jsma_untargeted(f_d, x, gamma=0.07, seed=0,
                                               outlier_class=n).x_adv,
    "cw": lambda oc: attacks.carlini_wagner_l2(f_d, x, confidence=7.0, optimizer="adadelta",
                                               learning_rate=100.0, max_iterations=100,
                                               binary_search_steps=3, initial_const=10.0,
                                               outlier_class=oc),
    "square": lambda oc: attacks.square(f_d, x, eps=0.2, max_queries=300, seed=0,
                                        outlier_class=oc),
}
clean = models.predict_logits(f_d, x).argmax(axis=1)
print(f"clean accuracy {np.mean(clean == y):.2f} on {len(y)} digits")
for name, attack in attack_fns.items():
    # plain: the attack may land in the outlier class; adaptive: it avoids it.
    for variant, outlier_class in (("plain", None), ("adaptive", n)):
        x_adv = np.asarray(attack(outlier_class))
        adversarial = models.predict_logits(f_d, x_adv).argmax(axis=1)
        rates = metrics.attack_rates(adversarial, clean, y, outlier_class=n)["filtered"]
        print(f"{name:6s} {variant:8s} recovered {rates['recovered']:.2f}  "
              f"detected {rates['detected']:.2f}  misclassified {rates['misclassified']:.2f}")

"""Knowledge distillation: a teacher's knowledge into a smaller student.

- `Distiller`: a `keras.Model` whose `fit` trains the student on the
  teacher's soft targets, the true targets, and optionally its hidden
  states and attention maps.
- `init_student_from_teacher`: a student that starts as chosen layers of
  its teacher.
- `keras_bert_kit.distillation.losses`: the loss components, as functions.
"""

from keras_bert_kit.distillation.distiller import Distiller
from keras_bert_kit.distillation.internals import with_internals
from keras_bert_kit.distillation.student_init import (
    default_teacher_layers,
    init_student_from_teacher,
)

__all__ = [
    "Distiller",
    "default_teacher_layers",
    "init_student_from_teacher",
    "with_internals",
]

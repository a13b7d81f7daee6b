"""frozen_copy: the distillation teacher several methods keep."""

import torch

from lifelong.encoders.frozen import frozen_copy


def test_frozen_copy_is_a_detached_frozen_eval_twin():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 2)).train()
    teacher = frozen_copy(model)
    assert model.training and not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters()) and all(p.requires_grad for p in model.parameters())
    x = torch.randn(5, 3)
    with torch.no_grad():
        model[0].weight.add_(1.0)  # the student moves, the teacher does not
    assert not torch.equal(teacher[0].weight, model[0].weight)
    assert torch.equal(teacher(x), teacher(x))  # eval mode: dropout off

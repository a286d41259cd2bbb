"""The examples of the xla-rs autograd chapter, in Python, through the compiler."""

from compiler import Tensor, Variable, functional


def backward_example():
    x = Variable(Tensor([2.0], ()))
    target = Variable(Tensor([10.0], ()))
    w = Variable(Tensor([3.0], ()))
    b = Variable(Tensor([1.0], ()))
    y = w * x + b
    diff = y + Variable(Tensor([-1.0], ())) * target
    loss = diff * diff
    loss.backward()
    assert w.grad.data()[0] == -12.0        # Tensor.data(): the flat values
    assert loss.data.data()[0] == 9.0        # Variable.data: a Tensor
    return loss, w, b


def square(x):
    return x * x


def functional_example():
    dx = functional.grad(square)(Tensor([3.0], ()))
    assert dx.data()[0] == 6.0
    val, dx = functional.value_and_grad(square)(Tensor([3.0], ()))
    assert val.data()[0] == 9.0 and dx.data()[0] == 6.0
    return val, dx


if __name__ == "__main__":
    loss, w, b = backward_example()
    print(f"loss = {loss.data.item()}, dloss/dw = {w.grad.item()}, dloss/db = {b.grad.item()}")
    val, dx = functional_example()
    print(f"square(3) = {val.item()}, d/dx square(3) = {dx.item()}")

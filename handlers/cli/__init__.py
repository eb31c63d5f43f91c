"""The terminal: ``python main.py run | sweep`` and their display (rich, loaded only on a terminal).

The top layer: it may import anything in ``handlers``; nothing imports it but ``main.py``'s command branch.
"""

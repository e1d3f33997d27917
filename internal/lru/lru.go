// Package lru is the one intrusive doubly linked list of the project, used
// to keep state in least-recently-used order (TCP connections, MQTT
// transactions, open process cases) and for other per-owner lists.
//
// The list is intrusive: an element embeds a Node and passes a pointer to
// itself when it is linked, so linking, unlinking and moving cost no
// allocation and no indirect call. A Node belongs to at most one List at
// a time; an element that must be in two lists embeds two Nodes.
package lru

// Node links one element into a List. The zero Node is unlinked.
type Node[T any] struct {
	prev, next *Node[T]
	owner      *T // the element; nil while unlinked
}

// Linked reports whether the node is in a list.
func (n *Node[T]) Linked() bool { return n.owner != nil }

// List is a doubly linked list of elements, front = least recently used.
// The zero List is empty and ready to use. It is not safe for concurrent
// use.
type List[T any] struct {
	head, tail *Node[T]
	n          int
}

// Len is the number of linked elements.
func (l *List[T]) Len() int { return l.n }

// Front is the first (least recently used) element, nil if empty.
func (l *List[T]) Front() *T {
	if l.head == nil {
		return nil
	}
	return l.head.owner
}

// Back is the last (most recently used) element, nil if empty.
func (l *List[T]) Back() *T {
	if l.tail == nil {
		return nil
	}
	return l.tail.owner
}

// Next is the element after n's, nil at the end or when n is unlinked.
func (l *List[T]) Next(n *Node[T]) *T {
	if n.next == nil {
		return nil
	}
	return n.next.owner
}

// PushBack links n, the node of owner, at the back. A node already linked
// is moved there.
//
// PushBack and PushFront are written to stay within the compiler's
// inlining budget (they run once per MQTT transaction): a relinked node
// keeps the count instead of being removed and counted again.
func (l *List[T]) PushBack(n *Node[T], owner *T) {
	if n.owner != nil {
		l.unlink(n)
	} else {
		l.n++
	}
	t := l.tail
	*n = Node[T]{prev: t, owner: owner}
	if t != nil {
		t.next = n
	} else {
		l.head = n
	}
	l.tail = n
}

// PushFront links n, the node of owner, at the front. A node already
// linked is moved there.
func (l *List[T]) PushFront(n *Node[T], owner *T) {
	if n.owner != nil {
		l.unlink(n)
	} else {
		l.n++
	}
	h := l.head
	*n = Node[T]{next: h, owner: owner}
	if h != nil {
		h.prev = n
	} else {
		l.tail = n
	}
	l.head = n
}

// MoveToBack marks n's element as the most recently used. An unlinked node
// is left alone.
func (l *List[T]) MoveToBack(n *Node[T]) {
	if n.owner == nil || l.tail == n {
		return
	}
	l.unlink(n)
	n.prev, n.next = l.tail, nil
	l.tail.next = n
	l.tail = n
}

// Remove unlinks n. Removing an unlinked node does nothing.
func (l *List[T]) Remove(n *Node[T]) {
	if n.owner == nil {
		return
	}
	l.unlink(n)
	n.prev, n.next, n.owner = nil, nil, nil
	l.n--
}

func (l *List[T]) unlink(n *Node[T]) {
	if n.prev != nil {
		n.prev.next = n.next
	} else {
		l.head = n.next
	}
	if n.next != nil {
		n.next.prev = n.prev
	} else {
		l.tail = n.prev
	}
}
